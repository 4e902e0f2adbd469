# Set-up shared by all rules: config validation, the study's layout (prunequant.layout), input and params functions.
import hashlib
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from prunequant.config import (  # noqa: E402
    active_data_settings,
    config_problems,
    data_files,
    missing_data_files,
    model_problems,
    study_problems,
    training_gpus,
)
from prunequant.workflow.code_digests import library_digests  # noqa: E402
from prunequant.layout import (  # noqa: E402
    CANDIDATE_OUTPUTS,
    LATENCY_RUNTIMES,
    StudyLayout,
    stable_setting,
)
from prunequant.variants import (  # noqa: E402
    candidate_training,
    method_settings,
    parse_model,
    parse_run,
    parse_split,
)

SCHEMA = Path(workflow.basedir) / "config.schema.yaml"


def _stop_on(problems):
    if problems:
        raise WorkflowError("Invalid configuration:\n  - " + "\n  - ".join(problems))


# Every check runs before any job: a bad setting costs seconds, not a training run.
_stop_on(config_problems(config, SCHEMA))
_stop_on(
    missing_data_files(config["data"])
    + model_problems(
        config["model"]["blocks"], config["data"]["length"], config["model"]["arch"]
    )
    + study_problems(config)
)

# GPUs each training job holds; with `--resources gpu=N`, N training jobs at a time.
TRAINING_GPUS = training_gpus(config["training_gpus"], config["device"])

# Resumable training state lives outside declared outputs: Snakemake deletes those when a job fails.
RESUME_DIR = ".prunequant-resume"


# ----------------------------------------------------------------------------- the variant space
def _n_folds(data):
    """Folds of a leave-one-group-out study (one per group), else None."""
    if data["folds"] != "leave_one_group_out":
        return None
    from prunequant.data import group_names  # the data package only for grouped folds

    return len(group_names(active_data_settings(data)))


# Every path of the study, and the files each stage and the report read (prunequant.layout).
STUDY = StudyLayout.from_config(config, _n_folds(config["data"]))


wildcard_constraints:
    run=r"(fold\d+-)?seed\d+",
    split=r"fixed|fold\d+|(fold\d+-)?seed\d+",
    model=r"[a-z0-9_]+(-[a-z0-9_.]+)*",
    recipe=r"[a-z0-9_]+",
    deployment=r"fp32_torch|fp32_onnxruntime|int8-[a-z0-9_]+_(onnxruntime|tflm)",
    runtime="torch|onnxruntime",
    candidate=r"bs\d+-lr\d+(\.\d+)?",


def code(script):
    """Digests of the code a rule's script runs, itself and the library modules it imports: a
    code edit reruns the rule, a comment or docstring edit does not.

    A params value of its own, so `snakemake -n` names the edited modules as the params that
    changed; it costs the DAG nothing, and a moved project (or one mounted elsewhere on a
    cluster node) keeps the same digests and plans nothing new.
    """
    return library_digests(
        Path(workflow.basedir) / "scripts" / f"{script}.py",
        Path(workflow.basedir) / "src" / "prunequant",
        memo_file=".prunequant-cache/code-digests.json",
    )


def caption_digests():
    """Digest of every caption file the reports show (``captions/*.rst``), by file name."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        for path in sorted((Path(workflow.basedir) / "captions").glob("*.rst"))
    }


# ----------------------------------------------------------------------------- input and params functions
def dataset(wildcards):
    return STUDY.dataset_path(wildcards.run)


def trained_model(wildcards):
    return STUDY.trained_model(wildcards.run, wildcards.model)


def teacher(wildcards):
    """Input function: the teacher checkpoint of a distilled training (nothing for the others);
    a QAT job's comes from its recipe."""
    recipe = getattr(wildcards, "recipe", None)
    return STUDY.teacher_inputs(wildcards.run, wildcards.model, recipe)


def distillation(wildcards):
    """Params function: a training's distillation settings, or None (labels only)."""
    return stable_setting(
        STUDY.distillation(wildcards.model, getattr(wildcards, "recipe", None))
    )


def run_seed(wildcards):
    return parse_run(wildcards.run)[1]


def tflm_inputs(wildcards):
    """Input function: each TFLM recipe's ORT int8 predictions, and a QAT recipe's checkpoint."""
    return STUDY.tflm_inputs(wildcards.run, wildcards.model)


def tflm_recipes(wildcards):
    """Params function: per TFLM recipe, its settings and the variant its evaluation names."""
    return {
        recipe: {
            "settings": stable_setting(STUDY.recipe(recipe)),
            "variant": variant(f"int8-{recipe}_tflm")(wildcards),
        }
        for recipe in STUDY.tflm
    }


def variant(deployment):
    """Params function: the names and method settings a stage copies into its evaluation."""

    def settings(wildcards):
        model = getattr(wildcards, "model", "baseline")
        if deployment == "int8":
            name = f"int8-{wildcards.recipe}_onnxruntime"
        else:
            name = deployment
        return {
            "run": wildcards.run,
            "seed": run_seed(wildcards),
            "model": model,
            "deployment": name,
        } | method_settings(vars(parse_model(model)))

    return settings
