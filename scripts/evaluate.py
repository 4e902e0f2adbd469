from prunequant.evaluation import evaluate_variant
from prunequant.jobs import job_logging, write_json

with job_logging(snakemake.log[0]):
    metrics, predictions = evaluate_variant(
        artifact_path=snakemake.input.artifact,
        parent_model_path=snakemake.input.parent,
        dataset_path=snakemake.input.dataset,
        model_name=snakemake.wildcards.model,
        prune_rate=snakemake.params.prune_rate,
        precision=snakemake.wildcards.precision,
        runtime=snakemake.wildcards.runtime,
        **snakemake.params.evaluation,
    )
    write_json(metrics, snakemake.output.metrics)
    predictions.to_csv(snakemake.output.predictions, index=False)
    print(
        {key: metrics[key] for key in ("accuracy", "size_bytes", "latency_batch1_ms", "latency_batch64_ms")}
    )
