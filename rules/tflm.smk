# Every full-int8 recipe of a model in TensorFlow Lite Micro: converted by litert-torch (its own
# environment, .venv-tflm), measured (arena, flash, host time) and scored in TFLM; all recipes of
# a (run, model) in one job, so the converter's imports are paid once.
rule tflm:
    input:
        unpack(tflm_inputs),
        parent=trained_model,
        parent_predictions=rules.export_onnx.output.predictions,
        dataset=dataset,
    output:
        **STUDY.tflm_output_patterns(),
    log:
        "logs/tflm/{run}/{model}.log",
    benchmark:
        "benchmarks/tflm/{run}/{model}.tsv"
    conda:
        "../envs/prunequant.yaml"
    params:
        code=code("tflm"),
        recipes=tflm_recipes,
        seed=run_seed,
        batch_size=config["evaluate"]["batch_size"],
    script:
        "../scripts/tflm.py"
