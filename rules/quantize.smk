# Post-training recipes (ptq, partial): from the fp32 ONNX model, calibrated on training samples.
rule quantize:
    input:
        onnx="results/{run}/export_onnx/{model}/model.onnx",
        parent=trained_model,
        parent_predictions="results/{run}/export_onnx/{model}/predictions.csv",
        dataset=dataset,
    output:
        onnx="results/{run}/quantize/{model}/{recipe}/model.onnx",
        record="results/{run}/quantize/{model}/{recipe}/quantize.json",
        evaluation="results/{run}/quantize/{model}/{recipe}/evaluation.json",
        predictions="results/{run}/quantize/{model}/{recipe}/predictions.csv",
    log:
        "logs/{run}/quantize/{model}/{recipe}.log",
    benchmark:
        "benchmarks/{run}/quantize/{model}/{recipe}.tsv"
    conda:
        "../envs/prunequant.yaml"
    params:
        code=code("quantize"),
        variant=variant("int8"),
        batch_size=config["evaluate"]["batch_size"],
        recipe=lambda wildcards: setting(recipe(wildcards.recipe)),
        seed=run_seed,
    script:
        "../scripts/quantize.py"


# Quantization-aware training: fake-quantized fine-tuning, then a real int8 model in ONNX Runtime.
rule qat:
    input:
        model=trained_model,
        parent_predictions="results/{run}/export_onnx/{model}/predictions.csv",
        dataset=dataset,
    output:
        onnx="results/{run}/qat/{model}/{recipe}/model.onnx",
        checkpoint="results/{run}/qat/{model}/{recipe}/checkpoint.pt",
        history="results/{run}/qat/{model}/{recipe}/history.csv",
        record="results/{run}/qat/{model}/{recipe}/qat.json",
        evaluation="results/{run}/qat/{model}/{recipe}/evaluation.json",
        predictions="results/{run}/qat/{model}/{recipe}/predictions.csv",
    log:
        "logs/{run}/qat/{model}/{recipe}.log",
    benchmark:
        "benchmarks/{run}/qat/{model}/{recipe}.tsv"
    conda:
        "../envs/prunequant.yaml"
    threads: 1
    resources:
        gpu=TRAINING_GPUS,
    params:
        code=code("qat"),
        variant=variant("int8"),
        batch_size=config["evaluate"]["batch_size"],
        recipe=lambda wildcards: setting(recipe(wildcards.recipe)),
        seed=run_seed,
        device=config["device"],
        resume=lambda wildcards: f"{RESUME_DIR}/{wildcards.run}/qat/{wildcards.model}/{wildcards.recipe}.pt",
    script:
        "../scripts/qat.py"
