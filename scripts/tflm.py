from prunequant.workflow.warmstart import continue_in_warm_process

continue_in_warm_process()  # the rest of this script may run in a fork of a warm process

from prunequant.deploy.stage import TflmRecipeFiles, deploy_in_tflm
from prunequant.workflow.jobs import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    inputs, outputs = snakemake.input, snakemake.output
    recipes = {
        recipe: TflmRecipeFiles(
            settings=dict(setup["settings"]),
            variant=dict(setup["variant"]),
            onnxruntime_predictions=inputs[f"onnxruntime_{recipe}"],
            qat_checkpoint=inputs.get(f"qat_{recipe}"),
            tflite=outputs.tflite[index],
            record=outputs.record[index],
            evaluation=outputs.evaluation[index],
            predictions=outputs.predictions[index],
        )
        for index, (recipe, setup) in enumerate(snakemake.params.recipes.items())
    }
    deploy_in_tflm(
        recipes,
        parent_model_path=inputs.parent,
        parent_predictions_path=inputs.parent_predictions,
        dataset_path=inputs.dataset,
        seed=snakemake.params.seed,
        batch_size=snakemake.params.batch_size,
    )
