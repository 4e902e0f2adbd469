rule export_onnx:
    input:
        model=trained_model,
        dataset="results/prepare_data/dataset.npz",
        code=code("export_onnx"),
    output:
        onnx="results/export_onnx/{model}/model.onnx",
    log:
        "logs/export_onnx/{model}.log",
    benchmark:
        "benchmarks/export_onnx/{model}.tsv"
    conda:
        "../envs/prunequant.yaml"
    script:
        "../scripts/export_onnx.py"
