"""Where a study's files live: what each stage writes, and what each stage and the report read.

Every path starts with its stage, then the run: ``results/prune/seed0/<model>/model.pt``.
Snakemake finds the rule that makes a file from the constant prefix of each rule's output
patterns, and a prefix that names the stage spares it trying the others
(bench/results/overhead.txt). The rules take their inputs from here; being plain Python, the
layout is tested without Snakemake.

This module imports no torch: the workflow plans jobs with it at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from prunequant.variants import (
    TIMED_RUNTIMES,
    configured_models,
    configured_runs,
    deployments,
    parse_deployment,
    parse_model,
    quantized_models,
    split_name,
    split_variant,
    tflm_recipes,
    tuning_grid,
)

__all__ = [
    "CANDIDATE_OUTPUTS",
    "FAMILY_STAGE",
    "FIGURES",
    "FOREST_QUESTIONS",
    "LATENCY_RUNTIMES",
    "TFLM_OUTPUTS",
    "StudyLayout",
    "stable_setting",
]

# What every training job writes, by output key; a tuned baseline is a copy of one candidate's.
CANDIDATE_OUTPUTS = {
    "model": "model.pt",
    "history": "history.csv",
    "metrics": "metrics.json",
    "evaluation": "evaluation.json",
    "predictions": "predictions.csv",
}

# Where each family's trained fp32 model lives: the stage that makes it.
FAMILY_STAGE = {
    "baseline": "train_baseline",
    "structured": "prune",
    "sensitivity": "prune",
    "unstructured": "sparsify",
    "scratch": "from_scratch",
}

# The runtimes whose variants are timed, all of one runtime in one job. TFLM is not among them:
# its reference kernels on this host say nothing of a microcontroller's time, so the tflm stage
# records that host time as such instead.
LATENCY_RUNTIMES = list(TIMED_RUNTIMES)

# What the tflm stage writes per recipe, by output key.
TFLM_OUTPUTS = {
    "tflite": "model.tflite",
    "record": "tflm.json",
    "evaluation": "evaluation.json",
    "predictions": "predictions.csv",
}

# The report's figures; each has its title and caption in captions/<name>.rst, which the
# Markdown report and the HTML report both show. A study with a tuning grid adds one.
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
    "device_budgets",
]
# The study questions that get a forest plot each (figure ``forest_<question>``); a recommendation
# is a single comparison, shown in the report's text instead.
FOREST_QUESTIONS = (
    "vs_baseline",
    "vs_parent",
    "criterion_vs_random",
    "global_vs_layer",
    "iterative_vs_oneshot",
    "sparse_vs_structured",
    "pruned_vs_scratch",
    "distilled_vs_plain",
)
FIGURES += [f"forest_{question}" for question in FOREST_QUESTIONS]
TUNING_FIGURE = "baseline_tuning"


def stable_setting(value):
    """A config value with dict keys sorted at every level.

    Snakemake compares params by their text, so without this, reordering keys in a config file
    would rerun every stage that receives them.
    """
    if isinstance(value, dict):
        return {key: stable_setting(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [stable_setting(item) for item in value]
    return value


@dataclass(frozen=True, eq=False)
class StudyLayout:
    """The files of one study: its runs, models, quantized models, recipes and tuning grid."""

    runs: list[str]
    models: list[str]
    quantized: list[str]  # the models that get int8 deployments
    recipes: dict[str, dict]  # recipe name → its settings without the name, in config order
    tuning: list[str]  # baseline-tuning grid points; empty: the baseline trains as configured
    sensitivity: bool  # whether per-block sensitivity curves are computed
    split_per_run: bool = False  # each run draws its own train/val split (data.split_per_run)
    distillations: dict[str, dict] = field(default_factory=dict)  # name → settings (``distillation:``)
    tflm: list[str] = field(default_factory=list)  # the recipes also deployed in TFLM (``quantize.tflm``)

    @classmethod
    def from_config(cls, config: Mapping, n_folds: int | None) -> StudyLayout:
        """The layout of a validated config; ``n_folds`` for leave-one-group-out, else None."""
        models = configured_models(config["prune"])
        sensitivity = config["prune"]["sensitivity"]
        return cls(
            runs=configured_runs(config["seeds"], n_folds),
            models=models,
            quantized=quantized_models(config["quantize"], models),
            recipes={
                recipe["name"]: {key: value for key, value in recipe.items() if key != "name"}
                for recipe in config["quantize"]["recipes"]
            },
            tuning=tuning_grid(config["tune"], config["train"]),
            sensitivity=bool(sensitivity["max_drop_pp"] or sensitivity["rates"]),
            split_per_run=bool(config["data"]["split_per_run"]),
            distillations={entry["name"]: dict(entry) for entry in config["distillation"]},
            tflm=tflm_recipes(config["quantize"]["recipes"], config["quantize"]["tflm"]),
        )

    # ------------------------------------------------------------------ the variant space
    @property
    def first_run(self) -> str:
        """The run whose artifacts are timed: the architecture, not the seed, sets latency."""
        return self.runs[0]

    @property
    def splits(self) -> list[str]:
        return sorted({self.split_of(run) for run in self.runs})

    def split_of(self, run: str) -> str:
        """The data split a run trains and scores on: the fixed one, its fold's, or its own."""
        return split_name(run, per_run=self.split_per_run)

    def dataset_path(self, run: str) -> str:
        """The prepared dataset a run trains and scores on."""
        return f"results/data/{self.split_of(run)}/dataset.npz"

    @property
    def recipe_names(self) -> list[str]:
        return list(self.recipes)

    def recipe(self, name: str) -> dict:
        """A recipe's settings, without its name (the name is in every path already)."""
        return dict(self.recipes[name])

    def evaluated_variants(self) -> list[tuple[str, str, str]]:
        """(run, model, deployment) of every evaluation the study asks for."""
        return [
            (run, model, deployment)
            for run in self.runs
            for model in self.models
            for deployment in deployments(model, self.quantized, self.recipe_names, self.tflm)
        ]

    # ------------------------------------------------------------------ one variant's files
    def model_dir(self, run: str, model: str) -> str:
        """The folder of the stage that trains a model's fp32 weights."""
        stage = FAMILY_STAGE[parse_model(model).family]
        if stage == "train_baseline":
            return f"results/train_baseline/{run}"
        return f"results/{stage}/{run}/{model}"

    def trained_model(self, run: str, model: str) -> str:
        return f"{self.model_dir(run, model)}/model.pt"

    def training_history(self, run: str, model: str) -> str:
        return f"{self.model_dir(run, model)}/history.csv"

    def distillation(self, model: str, recipe_name: str | None = None) -> dict | None:
        """The distillation settings a model's training (or, with ``recipe_name``, its QAT) uses;
        None: trained on labels only."""
        name = parse_model(model).distill if recipe_name is None else self.recipes[recipe_name].get("distill")
        return dict(self.distillations[name]) if name else None

    def teacher_inputs(self, run: str, model: str, recipe_name: str | None = None) -> dict[str, str]:
        """``{"teacher": <its checkpoint>}`` for a distilled training, else nothing: a rule's extra input."""
        distillation = self.distillation(model, recipe_name)
        if distillation is None:
            return {}
        return {"teacher": self.trained_model(run, distillation["teacher"])}

    def int8_stage(self, recipe_name: str) -> str:
        """The stage that makes a recipe's int8 model: quantization-aware training, or not."""
        return "qat" if self.recipes[recipe_name]["method"] == "qat" else "quantize"

    def int8_artifact(self, run: str, model: str, recipe_name: str) -> str:
        return f"results/{self.int8_stage(recipe_name)}/{run}/{model}/{recipe_name}/model.onnx"

    def int8_record(self, run: str, model: str, recipe_name: str) -> str:
        stage = self.int8_stage(recipe_name)
        return f"results/{stage}/{run}/{model}/{recipe_name}/{stage}.json"

    def tflm_dir(self, run: str, model: str, recipe_name: str) -> str:
        return f"results/tflm/{run}/{model}/{recipe_name}"

    def tflm_outputs(self, run: str, model: str) -> dict[str, list[str]]:
        """Output key → one path per TFLM recipe: what one tflm job writes for a model of a run."""
        return {
            key: [f"{self.tflm_dir(run, model, recipe)}/{name}" for recipe in self.tflm]
            for key, name in TFLM_OUTPUTS.items()
        }

    def tflm_output_patterns(self) -> dict[str, list[str]]:
        """:meth:`tflm_outputs` with ``{run}`` and ``{model}`` left as wildcards: the rule's outputs."""
        return self.tflm_outputs("{run}", "{model}")

    def tflm_inputs(self, run: str, model: str) -> dict[str, str]:
        """What a tflm job reads beside the parent: each recipe's ORT int8 predictions (agreement is
        measured against them) and a QAT recipe's trained checkpoint."""
        inputs = {}
        for recipe in self.tflm:
            int8_dir = self.stage_dir(run, model, f"int8-{recipe}_onnxruntime")
            inputs[f"onnxruntime_{recipe}"] = f"{int8_dir}/predictions.csv"
            if self.int8_stage(recipe) == "qat":
                inputs[f"qat_{recipe}"] = f"{int8_dir}/checkpoint.pt"
        return inputs

    def deployed_artifact(self, run: str, model: str, deployment: str) -> str:
        """The file a deployment runs: a checkpoint, an fp32 or an int8 ONNX model, a .tflite."""
        if deployment == "fp32_torch":
            return self.trained_model(run, model)
        if deployment == "fp32_onnxruntime":
            return f"results/export_onnx/{run}/{model}/model.onnx"
        form = parse_deployment(deployment)
        if form["runtime"] == "tflm":
            return f"{self.tflm_dir(run, model, form['recipe'])}/{TFLM_OUTPUTS['tflite']}"
        return self.int8_artifact(run, model, form["recipe"])

    def stage_dir(self, run: str, model: str, deployment: str) -> str:
        """The folder of the stage that makes (and scores) a deployed variant."""
        return self.deployed_artifact(run, model, deployment).rsplit("/", 1)[0]

    # ------------------------------------------------------------------ what the report reads
    def evaluation_files(self, name: str) -> list[str]:
        """Every stage's evaluation JSON (name "evaluation.json") or predictions CSV."""
        return [f"{self.stage_dir(*variant)}/{name}" for variant in self.evaluated_variants()]

    def timed_artifacts(self, runtime: str) -> dict[str, str]:
        """Variant name → artifact of every variant timed in one runtime (the first run's)."""
        return {
            f"{model}/{deployment}": self.deployed_artifact(run, model, deployment)
            for run, model, deployment in self.evaluated_variants()
            if run == self.first_run and parse_deployment(deployment)["runtime"] == runtime
        }

    def latency_references(self, runtime: str) -> dict[str, dict[str, str]]:
        """What each timed variant's speedup is measured against, in the same runtime.

        Two questions, two reference maps: every variant against the baseline in the same
        deployment, and every int8 variant against its own fp32 parent.
        """
        parts = {variant: split_variant(variant) for variant in self.timed_artifacts(runtime)}
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

    def training_histories(self) -> dict[str, str]:
        """Run/model → history CSV of every trained model (QAT curves too, as run/model/int8-recipe)."""
        histories = {}
        for run in self.runs:
            for model in self.models:
                histories[f"{run}/{model}"] = self.training_history(run, model)
            for model in self.quantized:
                for name in self.recipe_names:
                    if self.int8_stage(name) == "qat":
                        qat_dir = self.stage_dir(run, model, f"int8-{name}_onnxruntime")
                        histories[f"{run}/{model}/int8-{name}"] = f"{qat_dir}/history.csv"
        return histories

    def training_metrics(self) -> list[str]:
        """The metrics JSON of every trained fp32 model (the report reads the training device)."""
        return [f"{self.model_dir(run, model)}/metrics.json" for run in self.runs for model in self.models]

    def quantization_records(self) -> dict[str, str]:
        return {
            f"{run}/{model}/int8-{name}": self.int8_record(run, model, name)
            for run in self.runs
            for model in self.quantized
            for name in self.recipe_names
        }

    def sensitivity_curve(self, run: str) -> str:
        """A run's per-block sensitivity curves, which sensitivity-derived pruning reads."""
        return f"results/sensitivity/{run}/curves.csv"

    def sensitivity_curves(self) -> dict[str, str]:
        if not self.sensitivity:
            return {}
        return {run: self.sensitivity_curve(run) for run in self.runs}

    def sensitivity_records(self) -> dict[str, str]:
        """Model → the first run's pruning record of each sensitivity-derived model (its rates per block)."""
        return {
            model: f"{self.model_dir(self.first_run, model)}/pruning.json"
            for model in self.models
            if parse_model(model).family == "sensitivity"
        }

    @property
    def figures(self) -> list[str]:
        return FIGURES + ([TUNING_FIGURE] if self.tuning else [])

    def report_figures(self) -> list[str]:
        return [f"results/report/figures/{name}.png" for name in self.figures]

    # ------------------------------------------------------------------ baseline tuning
    def candidate_files(self, run: str) -> dict[str, dict[str, str]]:
        """Candidate → output key → path of every tuning-grid point trained in ``run``."""
        return {
            candidate: {
                key: f"results/tune/{run}/{candidate}/{name}" for key, name in CANDIDATE_OUTPUTS.items()
            }
            for candidate in self.tuning
        }

    def choice_file(self, split: str) -> str:
        """A data split's tuning choice: the grid point its runs' baselines are adopted from."""
        return f"results/tune/{split}/choice.json"

    @cached_property
    def tuning_layout(self) -> dict[str, dict]:
        """Split → its choice file and every candidate's predictions and evaluation, by run.

        What choose_baseline reads, and the report after it; empty without a grid.
        """
        return {
            split: {
                "choice": self.choice_file(split),
                **{
                    key: {
                        candidate: {
                            run: self.candidate_files(run)[candidate][key]
                            for run in self.runs
                            if self.split_of(run) == split
                        }
                        for candidate in self.tuning
                    }
                    for key in ("predictions", "evaluation")
                },
            }
            for split in (self.splits if self.tuning else [])
        }

    def tuning_files(self, split: str) -> list[str]:
        """Every candidate's predictions and evaluation in a split: what its choice reads."""
        layout = self.tuning_layout[split]
        return [
            path
            for key in ("predictions", "evaluation")
            for by_run in layout[key].values()
            for path in by_run.values()
        ]
