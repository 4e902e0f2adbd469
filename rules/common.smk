# Set-up shared by all rules: config validation, the variant space, result-path helpers.
import os
import sys
from dataclasses import asdict
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
from prunequant.sources import library_digests  # noqa: E402
from prunequant.variants import (  # noqa: E402
    configured_models,
    configured_runs,
    deployments,
    method_settings,
    parse_deployment,
    parse_model,
    parse_run,
    quantized_models,
    split_name,
    split_variant,
    candidate_training,
    tuning_grid,
)

SCHEMA = Path(workflow.basedir) / "config.schema.yaml"


def _stop_on(problems):
    if problems:
        raise WorkflowError("Invalid configuration:\n  - " + "\n  - ".join(problems))


# Every check runs before any job: a bad setting costs seconds, not a training run. A config
# already found valid is not validated again (a marker per schema + config digest).
_stop_on(
    config_problems(config, SCHEMA, validated_dir=".prunequant-cache/valid-configs")
)
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


N_FOLDS = _n_folds(config["data"])
RUNS = configured_runs(config["seeds"], N_FOLDS)
FIRST_RUN = RUNS[
    0
]  # latency is timed on this run's artifacts (the architecture, not the seed, sets it)
SPLITS = sorted({split_name(run) for run in RUNS})
MODELS = configured_models(config["prune"])
QUANTIZED = quantized_models(config["quantize"], MODELS)
RECIPES = [recipe["name"] for recipe in config["quantize"]["recipes"]]
LATENCY_RUNTIMES = ["torch", "onnxruntime"]
# Baseline-tuning grid points (empty: the baseline trains with `train` as it is).
TUNING = tuning_grid(config["tune"], config["train"])


wildcard_constraints:
    run=r"(fold\d+-)?seed\d+",
    split=r"fixed|fold\d+",
    model=r"[a-z0-9_]+(-[a-z0-9_.]+)*",
    recipe=r"[a-z0-9_]+",
    deployment=r"fp32_torch|fp32_onnxruntime|int8-[a-z0-9_]+_onnxruntime",
    runtime="torch|onnxruntime",
    candidate=r"bs\d+-lr\d+(\.\d+)?",


def setting(value):
    """A config value with dict keys sorted at every level.

    Snakemake compares params by their text, so without this, reordering keys in a
    config file would rerun every stage that receives them.
    """
    if isinstance(value, dict):
        return {key: setting(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [setting(item) for item in value]
    return value


def code(script):
    """Digests of the library modules a rule's script imports: an edit to one reruns the rule.

    A params value, so it costs the DAG nothing and a moved project (or one mounted elsewhere
    on a cluster node) keeps the same digests and plans nothing new.
    """
    return library_digests(
        Path(workflow.basedir) / "scripts" / f"{script}.py",
        Path(workflow.basedir) / "src" / "prunequant",
        cache_file=".prunequant-cache/code-digests.json",
    )


def run_seed(wildcards):
    return parse_run(wildcards.run)[1]


def dataset(wildcards):
    return f"results/data/{split_name(wildcards.run)}/dataset.npz"


# What every training job writes, by output key; a tuned baseline is a copy of one candidate's.
CANDIDATE_OUTPUTS = {
    "model": "model.pt",
    "history": "history.csv",
    "metrics": "metrics.json",
    "evaluation": "evaluation.json",
    "predictions": "predictions.csv",
}


def candidate_files(run):
    """Candidate → output key → path of every tuning-grid point trained in ``run``."""
    return {
        candidate: {
            key: f"results/tune/{run}/{candidate}/{name}"
            for key, name in CANDIDATE_OUTPUTS.items()
        }
        for candidate in TUNING
    }


# Split → its choice file and every candidate's predictions and evaluation, by run (empty
# without a grid): what choose_baseline reads, and the report after it.
TUNING_LAYOUT = {
    split: {
        "choice": f"results/tune/{split}/choice.json",
        **{
            key: {
                candidate: {
                    run: candidate_files(run)[candidate][key]
                    for run in RUNS
                    if split_name(run) == split
                }
                for candidate in TUNING
            }
            for key in ("predictions", "evaluation")
        },
    }
    for split in (SPLITS if TUNING else [])
}


def tuning_files(split):
    """Every candidate's predictions and evaluation in a split: what its choice reads."""
    layout = TUNING_LAYOUT[split]
    return [
        path
        for key in ("predictions", "evaluation")
        for by_run in layout[key].values()
        for path in by_run.values()
    ]


def model_settings(model):
    """What a model's name stands for, as plain settings for its script."""
    return method_settings(asdict(parse_model(model)))


# Where each family's trained fp32 model lives: the stage that makes it.
FAMILY_STAGE = {
    "baseline": "train_baseline",
    "structured": "prune",
    "sensitivity": "prune",
    "unstructured": "sparsify",
    "scratch": "from_scratch",
}


def model_dir(run, model):
    stage = FAMILY_STAGE[parse_model(model).family]
    if stage == "train_baseline":
        return f"results/train_baseline/{run}"
    return f"results/{stage}/{run}/{model}"


def trained_model(wildcards):
    return f"{model_dir(wildcards.run, wildcards.model)}/model.pt"


def training_history(run, model):
    return f"{model_dir(run, model)}/history.csv"


def recipe(name):
    """A recipe's settings, without its name (the name is in every path already)."""
    (found,) = [item for item in config["quantize"]["recipes"] if item["name"] == name]
    return {key: value for key, value in found.items() if key != "name"}


def int8_artifact(run, model, recipe_name):
    stage = "qat" if recipe(recipe_name)["method"] == "qat" else "quantize"
    return f"results/{stage}/{run}/{model}/{recipe_name}/model.onnx"


def int8_record(run, model, recipe_name):
    stage = "qat" if recipe(recipe_name)["method"] == "qat" else "quantize"
    return f"results/{stage}/{run}/{model}/{recipe_name}/{stage}.json"


def deployed_artifact(run, model, deployment):
    form = parse_deployment(deployment)
    if deployment == "fp32_torch":
        return f"{model_dir(run, model)}/model.pt"
    if deployment == "fp32_onnxruntime":
        return f"results/export_onnx/{run}/{model}/model.onnx"
    return int8_artifact(run, model, form["recipe"])


def stage_dir(run, model, deployment):
    """The folder of the stage that makes (and scores) a deployed variant."""
    if deployment == "fp32_torch":
        return model_dir(run, model)
    if deployment == "fp32_onnxruntime":
        return f"results/export_onnx/{run}/{model}"
    return str(Path(deployed_artifact(run, model, deployment)).parent)


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
        } | model_settings(model)

    return settings


def evaluated_variants():
    """(run, model, deployment) of every evaluation the study asks for."""
    return [
        (run, model, deployment)
        for run in RUNS
        for model in MODELS
        for deployment in deployments(model, QUANTIZED, RECIPES)
    ]


def evaluation_files(name):
    """Every stage's evaluation JSON (name "evaluation.json") or predictions CSV."""
    return [f"{stage_dir(*variant)}/{name}" for variant in evaluated_variants()]


def timed_artifacts(runtime):
    """Variant name → artifact of every variant timed in one runtime (first run's models)."""
    return {
        f"{model}/{deployment}": deployed_artifact(FIRST_RUN, model, deployment)
        for model in MODELS
        for deployment in deployments(model, QUANTIZED, RECIPES)
        if parse_deployment(deployment)["runtime"] == runtime
    }


def latency_references(runtime):
    """What each timed variant's speedup is measured against, in the same runtime.

    Two questions, two reference maps: every variant against the baseline in the same
    deployment, and every int8 variant against its own fp32 parent.
    """
    variants = timed_artifacts(runtime)
    parts = {variant: split_variant(variant) for variant in variants}
    against_baseline = {
        variant: f"baseline/{deployment}"
        for variant, (model, deployment) in parts.items()
        if model != "baseline"
    }
    against_parent = {
        variant: f"{model}/fp32_onnxruntime"
        for variant, (model, deployment) in parts.items()
        if parse_deployment(deployment)["precision"] == "int8"
    }
    return {"baseline": against_baseline, "parent": against_parent}


def training_histories():
    """Run → model → history CSV of every trained model (QAT curves included, as model/recipe)."""
    histories = {}
    for run in RUNS:
        for model in MODELS:
            histories[f"{run}/{model}"] = training_history(run, model)
        for model in QUANTIZED:
            for name in RECIPES:
                if recipe(name)["method"] == "qat":
                    histories[f"{run}/{model}/int8-{name}"] = (
                        f"results/qat/{run}/{model}/{name}/history.csv"
                    )
    return histories


def quantization_records():
    return {
        f"{run}/{model}/int8-{name}": int8_record(run, model, name)
        for run in RUNS
        for model in QUANTIZED
        for name in RECIPES
    }


def sensitivity_curves():
    if (
        not config["prune"]["sensitivity"]["max_drop_pp"]
        and not config["prune"]["sensitivity"]["rates"]
    ):
        return {}
    return {run: f"results/sensitivity/{run}/curves.csv" for run in RUNS}


# The report's figures; each has its title and caption in captions/<name>.rst, which the
# Markdown report and the HTML report both show.
FIGURES = [
    "pareto_weight_bytes",
    "pareto_macs",
    "pareto_latency_b1",
    "pareto_latency_b64",
    "pruning_vs_quantization",
    "criteria",
    "schedules_and_scopes",
    "structured_vs_unstructured",
    "pruned_vs_scratch",
    "sensitivity",
    "quantization_sensitivity",
    "training_curves",
    "confusion",
] + (["baseline_tuning"] if TUNING else [])


def report_figures():
    return [f"results/report/figures/{name}.png" for name in FIGURES]
