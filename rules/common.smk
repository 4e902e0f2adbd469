# Set-up shared by all rules: config validation, result-path helpers, input functions.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from prunequant.config import (  # noqa: E402
    active_data_settings,
    config_problems,
    data_files,
    missing_data_files,
    model_problems,
)
from prunequant.sources import library_sources  # noqa: E402

SCHEMA = Path(workflow.basedir) / "config.schema.yaml"
_problems = config_problems(config, SCHEMA)
if _problems:
    raise WorkflowError("Invalid configuration:\n  - " + "\n  - ".join(_problems))
validate(config, SCHEMA)
_problems = missing_data_files(config["data"]) + model_problems(
    config["model"]["blocks"], config["data"]["length"]
)
if _problems:
    raise WorkflowError("Invalid configuration:\n  - " + "\n  - ".join(_problems))

# Resumable training state lives outside declared outputs: Snakemake deletes those when a job fails.
RESUME_DIR = ".prunequant-resume"
DEPLOYMENTS = {"fp32_torch", "fp32_onnxruntime", "int8_onnxruntime"}


wildcard_constraints:
    model=r"baseline|rate0\.\d+",
    precision="fp32|int8",
    runtime="torch|onnxruntime",


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


def model_name(rate):
    return f"rate{rate:g}"


MODELS = ["baseline"] + [model_name(rate) for rate in config["prune"]["rates"]]
PRUNED = MODELS[1:]


def code(script):
    """The library modules a rule's script imports: edits to them rerun the rule."""
    return library_sources(
        Path(workflow.basedir) / "scripts" / f"{script}.py",
        Path(workflow.basedir) / "src" / "prunequant",
    )


def prune_rate(wildcards):
    return (
        0.0
        if wildcards.model == "baseline"
        else float(wildcards.model.removeprefix("rate"))
    )


def trained_model(wildcards):
    if wildcards.model == "baseline":
        return "results/train_baseline/model.pt"
    return f"results/finetune/{wildcards.model}/model.pt"


def evaluated_artifact(wildcards):
    deployment = f"{wildcards.precision}_{wildcards.runtime}"
    if deployment not in DEPLOYMENTS:
        raise WorkflowError(
            f"no such deployment {deployment!r}; known: {sorted(DEPLOYMENTS)}"
        )
    if deployment == "fp32_torch":
        return trained_model(wildcards)
    stage = "export_onnx" if wildcards.precision == "fp32" else "quantize"
    return f"results/{stage}/{wildcards.model}/model.onnx"


def training_histories():
    return {"baseline": "results/train_baseline/history.csv"} | {
        model: f"results/finetune/{model}/history.csv" for model in PRUNED
    }


def evaluation_metrics():
    return [
        f"results/evaluate/{model}/{deployment}/metrics.json"
        for model in MODELS
        for deployment in sorted(DEPLOYMENTS)
    ]


FIGURES = ["accuracy_vs_rate", "accuracy_vs_size", "training_curves"]


def report_figures():
    return [f"results/report/figures/{name}.png" for name in FIGURES]
