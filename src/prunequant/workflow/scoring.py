"""What every stage's script ends with: the artifact it made, scored from the job's own files.

Apart from :mod:`.jobs` so that only the scripts of stages that score import the evaluation code
(and rerun when it changes).
"""

from __future__ import annotations

from prunequant.evaluation import write_evaluation

__all__ = ["score_stage_output"]


def score_stage_output(job, *, artifact_path, parent_model_path) -> dict:
    """:func:`prunequant.evaluation.write_evaluation` for the workflow job that made ``artifact_path``.

    ``job`` is the job's Snakemake object, read by name only: ``input.dataset`` (and
    ``input.parent_predictions`` for an int8 model), ``params.variant``, ``params.batch_size``,
    ``output.evaluation`` and ``output.predictions``. Every stage scores what it made this way; the
    library itself takes only explicit arguments.
    """
    return write_evaluation(
        artifact_path=artifact_path,
        parent_model_path=parent_model_path,
        dataset_path=job.input.dataset,
        variant=job.params.variant,
        batch_size=job.params.batch_size,
        evaluation_path=job.output.evaluation,
        predictions_path=job.output.predictions,
        parent_predictions_path=job.input.get("parent_predictions"),
    )
