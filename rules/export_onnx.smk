# fp32 ONNX of a model's deployment form (BatchNorm folded), scored in ONNX Runtime.
rule export_onnx:
    input:
        model=trained_model,
        dataset=dataset,
    output:
        onnx="results/export_onnx/{run}/{model}/model.onnx",
        evaluation="results/export_onnx/{run}/{model}/evaluation.json",
        predictions="results/export_onnx/{run}/{model}/predictions.csv",
    log:
        "logs/export_onnx/{run}/{model}.log",
    benchmark:
        "benchmarks/export_onnx/{run}/{model}.tsv"
    conda:
        "../envs/prunequant.yaml"
    params:
        code=code("export_onnx"),
        variant=variant("fp32_onnxruntime"),
        batch_size=config["evaluate"]["batch_size"],
    script:
        "../scripts/export_onnx.py"
