# fp32 ONNX of a model's deployment form (BatchNorm folded), scored in ONNX Runtime.
rule export_onnx:
    input:
        model=trained_model,
        dataset=dataset,
    output:
        onnx="results/{run}/export_onnx/{model}/model.onnx",
        evaluation="results/{run}/export_onnx/{model}/evaluation.json",
        predictions="results/{run}/export_onnx/{model}/predictions.csv",
    log:
        "logs/{run}/export_onnx/{model}.log",
    benchmark:
        "benchmarks/{run}/export_onnx/{model}.tsv"
    conda:
        "../envs/prunequant.yaml"
    params:
        code=code("export_onnx"),
        variant=variant("fp32_onnxruntime"),
        batch_size=config["evaluate"]["batch_size"],
    script:
        "../scripts/export_onnx.py"
