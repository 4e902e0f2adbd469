# Post-training recipes (ptq, partial): from the fp32 ONNX model, calibrated on training samples.
rule quantize:
    input:
        onnx=rules.export_onnx.output.onnx,
        parent=trained_model,
        parent_predictions=rules.export_onnx.output.predictions,
        dataset=dataset,
    output:
        onnx="results/quantize/{run}/{model}/{recipe}/model.onnx",
        record="results/quantize/{run}/{model}/{recipe}/quantize.json",
        evaluation="results/quantize/{run}/{model}/{recipe}/evaluation.json",
        predictions="results/quantize/{run}/{model}/{recipe}/predictions.csv",
    log:
        "logs/quantize/{run}/{model}/{recipe}.log",
    benchmark:
        "benchmarks/quantize/{run}/{model}/{recipe}.tsv"
    conda:
        "../envs/prunequant.yaml"
    params:
        code=code("quantize"),
        variant=variant("int8"),
        batch_size=config["evaluate"]["batch_size"],
        recipe=lambda wildcards: stable_setting(STUDY.recipe(wildcards.recipe)),
    script:
        "../scripts/quantize.py"


# Quantization-aware training: fake-quantized fine-tuning, then a real int8 model in ONNX Runtime.
rule qat:
    input:
        unpack(teacher),
        model=trained_model,
        parent_predictions=rules.export_onnx.output.predictions,
        dataset=dataset,
    output:
        onnx="results/qat/{run}/{model}/{recipe}/model.onnx",
        checkpoint="results/qat/{run}/{model}/{recipe}/checkpoint.pt",
        history="results/qat/{run}/{model}/{recipe}/history.csv",
        record="results/qat/{run}/{model}/{recipe}/qat.json",
        evaluation="results/qat/{run}/{model}/{recipe}/evaluation.json",
        predictions="results/qat/{run}/{model}/{recipe}/predictions.csv",
    log:
        "logs/qat/{run}/{model}/{recipe}.log",
    benchmark:
        "benchmarks/qat/{run}/{model}/{recipe}.tsv"
    conda:
        "../envs/prunequant.yaml"
    threads: 1
    resources:
        gpu=TRAINING_GPUS,
    params:
        code=code("qat"),
        variant=variant("int8"),
        batch_size=config["evaluate"]["batch_size"],
        recipe=lambda wildcards: stable_setting(STUDY.recipe(wildcards.recipe)),
        distillation=distillation,
        device=config["device"],
        resume=f"{RESUME_DIR}/{{run}}/qat/{{model}}/{{recipe}}.pt",
    script:
        "../scripts/qat.py"
