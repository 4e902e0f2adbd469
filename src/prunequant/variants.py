"""The variant space: every trained network, quantization recipe and deployment has a name.

A *run* is one repetition of the study (a training seed, and with leave-one-group-out a
fold). A *model* is one trained fp32 network of a run, named by the point it occupies in the
space of compression methods; a *deployment* is how that model runs (fp32 in PyTorch, fp32 in
ONNX Runtime, or int8 by a named recipe in ONNX Runtime). Names are file-system safe and
parse back to their settings, so the workflow turns each dimension into a wildcard and the
report reads the settings off the names.

This module imports no torch: the workflow plans jobs with it at start-up.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "CRITERIA",
    "SCOPES",
    "SPACINGS",
    "METHOD_FIELDS",
    "ModelVariant",
    "method_settings",
    "structured_name",
    "parse_model",
    "configured_models",
    "quantized_models",
    "run_name",
    "parse_run",
    "configured_runs",
    "parse_split",
    "split_name",
    "INT8_RUNTIMES",
    "RUNTIMES",
    "TIMED_RUNTIMES",
    "TFLM_METHODS",
    "tflm_recipes",
    "deployments",
    "parse_deployment",
    "schedule_label",
    "split_variant",
    "distilled_recipe_twins",
    "candidate_name",
    "parse_candidate",
    "tuning_grid",
    "candidate_training",
]

# Registered by name in prunequant.prune; repeated here so that planning needs no torch.
CRITERIA = ("l1", "l2", "bn_scale", "taylor", "random")
SCOPES = ("layer", "global")
SPACINGS = ("linear", "cubic")
FP32_DEPLOYMENTS = ("fp32_torch", "fp32_onnxruntime")
# Where an int8 recipe runs: ONNX Runtime (every recipe), TensorFlow Lite Micro (full-int8 ones).
INT8_RUNTIMES = ("onnxruntime", "tflm")
# Every runtime a variant is deployed in, and those whose variants are timed together (TFLM runs
# reference kernels on the host, whose times say nothing of a microcontroller's).
RUNTIMES = ("torch", "onnxruntime", "tflm")
TIMED_RUNTIMES = ("torch", "onnxruntime")
# Recipe methods whose int8 model runs in TFLM's integer kernels as a whole; partial quantization
# keeps layers in float, which TFLM's int8 kernels cannot run.
TFLM_METHODS = ("ptq", "qat")

_RATE = r"(?P<rate>0?\.\d+|0|1)"
# A distilled twin ends in its distillation's name: "l1-layer-oneshot-r0.5-kd" (``distillation[].name``).
_DISTILLED = r"(-(?P<distill>[a-z][a-z0-9_]*))?"
_STRUCTURED = re.compile(
    rf"^(?P<criterion>{'|'.join(CRITERIA)})-(?P<scope>{'|'.join(SCOPES)})-"
    rf"(?P<schedule>oneshot|iter(?P<steps>\d+)(?P<spacing>{'|'.join(SPACINGS)}))-r{_RATE}{_DISTILLED}$"
)
_SENSITIVITY = re.compile(rf"^sens-(?P<criterion>{'|'.join(CRITERIA)})-d(?P<drop>\d+(\.\d+)?)$")
_UNSTRUCTURED = re.compile(rf"^sparse-(?P<scope>{'|'.join(SCOPES)})-s{_RATE}{_DISTILLED}$")
_SCRATCH = re.compile(rf"^scratch-r{_RATE}{_DISTILLED}$")
_RUN = re.compile(r"^(fold(?P<fold>\d+)-)?seed(?P<seed>\d+)$")
_INT8 = re.compile(rf"^int8-(?P<recipe>[a-z0-9_]+)_(?P<runtime>{'|'.join(INT8_RUNTIMES)})$")
_CANDIDATE = re.compile(r"^bs(?P<batch_size>\d+)-lr(?P<lr>\d+(\.\d+)?)$")


@dataclass(frozen=True)
class ModelVariant:
    """The settings a model name stands for."""

    name: str
    family: str  # baseline | structured | sensitivity | unstructured | scratch
    criterion: str = ""
    scope: str = ""
    schedule: str = ""  # oneshot | iterative
    steps: int = 1
    spacing: str = ""
    rate: float = 0.0  # channel share removed, or weight sparsity for unstructured
    max_drop_pp: float = 0.0  # sensitivity-derived rates: accepted validation drop per block
    distill: str = ""  # the distillation its training used (``distillation[].name``); "" for none

    @property
    def method(self) -> str:
        """A short label of the method, without the rate."""
        if self.family == "structured":
            label = f"{self.criterion}/{self.scope}/{schedule_label(self.schedule, self.steps, self.spacing)}"
        elif self.family == "sensitivity":
            label = f"{self.criterion}/per-block (≤{self.max_drop_pp:g} pp)"
        elif self.family == "unstructured":
            label = f"magnitude/{self.scope}"
        else:
            label = self.family
        return f"{label} + {self.distill}" if self.distill else label

    @property
    def undistilled(self) -> str:
        """The name of the same model trained without a teacher: its distilled twin's reference."""
        return self.name.removesuffix(f"-{self.distill}") if self.distill else self.name


# What a model's compression method is, field by field: what a stage receives, records and
# stores beside its weights. A variant's settings (``params.variant``) hold these and more.
METHOD_FIELDS = ("family", "criterion", "scope", "schedule", "steps", "spacing", "rate", "max_drop_pp")


def method_settings(settings: Mapping) -> dict:
    """The method fields of a model's settings, e.g. of a variant's or of ``vars(parse_model(name))``."""
    return {key: settings[key] for key in METHOD_FIELDS}


def _rate_text(rate: float) -> str:
    """The shortest text that reads back as exactly ``rate`` (``repr``): "0.5", "0.05", "0.1234567".

    ``:g`` would keep six significant digits only, so two rates could share a name.
    """
    return repr(float(rate))


def schedule_label(schedule: str, steps: int, spacing: str) -> str:
    return "oneshot" if schedule == "oneshot" else f"iter{steps}{spacing}"


def structured_name(
    criterion: str, scope: str, schedule: str, rate: float, steps: int = 1, spacing: str = ""
) -> str:
    return f"{criterion}-{scope}-{schedule_label(schedule, steps, spacing)}-r{_rate_text(rate)}"


def parse_model(name: str) -> ModelVariant:
    """The settings of a model name; ValueError for a name that belongs to no family."""
    if name == "baseline":
        return ModelVariant(name, "baseline")
    if match := _STRUCTURED.match(name):
        iterative = match["steps"] is not None
        return ModelVariant(
            name,
            "structured",
            criterion=match["criterion"],
            scope=match["scope"],
            schedule="iterative" if iterative else "oneshot",
            steps=int(match["steps"]) if iterative else 1,
            spacing=match["spacing"] or "",
            rate=float(match["rate"]),
            distill=match["distill"] or "",
        )
    if match := _SENSITIVITY.match(name):
        return ModelVariant(
            name, "sensitivity", criterion=match["criterion"], scope="layer", max_drop_pp=float(match["drop"])
        )
    if match := _UNSTRUCTURED.match(name):
        return ModelVariant(
            name,
            "unstructured",
            scope=match["scope"],
            rate=float(match["rate"]),
            distill=match["distill"] or "",
        )
    if match := _SCRATCH.match(name):
        return ModelVariant(name, "scratch", rate=float(match["rate"]), distill=match["distill"] or "")
    raise ValueError(f"{name!r} names no model of a known family")


def configured_models(prune: Mapping) -> list[str]:
    """Every model the ``prune`` section of the config asks for, baseline first, without repeats.

    A method entry (or the ``unstructured`` and ``from_scratch`` sections) with ``distill: [name,
    …]`` adds, after each of its models, the twin trained with that distillation (``<model>-<name>``).
    """
    names = ["baseline"]

    def add(name: str, settings: Mapping) -> None:
        names.append(name)
        names.extend(f"{name}-{distillation}" for distillation in settings.get("distill", []))

    for method in prune.get("structured", []):
        for rate in method["rates"]:
            add(
                structured_name(
                    method["criterion"],
                    method["scope"],
                    method["schedule"],
                    rate,
                    method.get("steps", 1),
                    method.get("spacing", ""),
                ),
                method,
            )
    sensitivity = prune.get("sensitivity") or {}
    for drop in sensitivity.get("max_drop_pp", []):
        names.append(f"sens-{sensitivity['criterion']}-d{_rate_text(drop)}")
    unstructured = prune.get("unstructured") or {}
    for scope in unstructured.get("scopes", []):
        for sparsity in unstructured.get("sparsities", []):
            add(f"sparse-{scope}-s{_rate_text(sparsity)}", unstructured)
    scratch = prune.get("from_scratch", {})
    for rate in scratch.get("rates", []):
        add(f"scratch-r{_rate_text(rate)}", scratch)
    return list(dict.fromkeys(names))


def quantized_models(quantize: Mapping, models: list[str]) -> list[str]:
    """The models that go through the quantization recipes (``quantize.models``: names or "all")."""
    wanted = quantize.get("models", ["baseline"])
    if wanted == "all":
        return list(models)
    return [name for name in models if name in wanted]


def run_name(seed: int, fold: int | None = None) -> str:
    return f"seed{seed}" if fold is None else f"fold{fold}-seed{seed}"


def parse_run(name: str) -> tuple[int | None, int]:
    """(fold or None, seed) of a run name."""
    match = _RUN.match(name)
    if not match:
        raise ValueError(f"{name!r} is not a run name like 'seed0' or 'fold2-seed0'")
    return (int(match["fold"]) if match["fold"] is not None else None), int(match["seed"])


def configured_runs(seeds: list[int], n_folds: int | None) -> list[str]:
    """Every run: one per seed, or one per fold and seed with leave-one-group-out."""
    if not n_folds:
        return [run_name(seed) for seed in seeds]
    return [run_name(seed, fold) for fold in range(n_folds) for seed in seeds]


def split_name(run: str, per_run: bool = False) -> str:
    """The data split a run trains on: one fixed split, or its fold; with ``per_run``
    (``data.split_per_run``) its own split, named as the run (train/val drawn from its seed)."""
    if per_run:
        parse_run(run)
        return run
    fold, _ = parse_run(run)
    return "fixed" if fold is None else f"fold{fold}"


def parse_split(name: str) -> tuple[int | None, int | None]:
    """(held-out fold or None, seed of the train/val draw or None) of a split name.

    "fixed" → (None, None); "fold2" → (2, None); "seed3" → (None, 3); "fold2-seed3" → (2, 3).
    """
    if name == "fixed":
        return None, None
    if match := re.fullmatch(r"fold(\d+)", name):
        return int(match[1]), None
    return parse_run(name)


def tflm_recipes(recipes: list[Mapping], enabled: bool = True) -> list[str]:
    """The recipes deployed in TFLM too (``quantize.tflm``): every full-int8 one (TFLM_METHODS)."""
    return [recipe["name"] for recipe in recipes if enabled and recipe["method"] in TFLM_METHODS]


def deployments(model: str, quantized: list[str], recipes: list[str], tflm: list[str] = ()) -> list[str]:
    """How a model is evaluated: fp32 in PyTorch always; ONNX Runtime fp32 and int8 when quantized,
    and the ``tflm`` recipes in TensorFlow Lite Micro."""
    if model not in quantized:
        return ["fp32_torch"]
    return [
        *FP32_DEPLOYMENTS,
        *(f"int8-{recipe}_onnxruntime" for recipe in recipes),
        *(f"int8-{recipe}_tflm" for recipe in tflm),
    ]


def parse_deployment(deployment: str) -> dict:
    """precision, runtime and recipe ("" for fp32) of a deployment name."""
    if deployment in FP32_DEPLOYMENTS:
        return {"precision": "fp32", "runtime": deployment.removeprefix("fp32_"), "recipe": ""}
    if match := _INT8.match(deployment):
        return {"precision": "int8", "runtime": match["runtime"], "recipe": match["recipe"]}
    raise ValueError(
        f"{deployment!r} is not a deployment like 'fp32_torch', 'int8-minmax_onnxruntime' "
        "or 'int8-minmax_tflm'"
    )


def split_variant(name: str) -> tuple[str, str]:
    """(model, deployment) of a variant name "<model>/<deployment>"."""
    model, _, deployment = name.partition("/")
    return model, deployment


# ----------------------------------------------------------------------------- baseline tuning


def candidate_name(batch_size: int, lr: float) -> str:
    """``bs32-lr0.001``, a baseline-tuning grid point; positional notation keeps ``e-05`` out of names."""
    return f"bs{int(batch_size)}-lr{Decimal(repr(float(lr))).normalize():f}"


def parse_candidate(name: str) -> tuple[int, float]:
    """(batch size, learning rate) of a candidate name."""
    match = _CANDIDATE.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a tuning candidate name like 'bs32-lr0.001'")
    return int(match["batch_size"]), float(match["lr"])


def tuning_grid(tune: Mapping, train: Mapping) -> list[str]:
    """Every candidate of the baseline-tuning grid, batch size major; empty when tuning is off.

    Tuning is on when either list is non-empty; an empty list keeps ``train``'s value on its axis.
    """
    batch_sizes, lrs = list(tune.get("batch_sizes") or []), list(tune.get("lrs") or [])
    if not batch_sizes and not lrs:
        return []
    return [
        candidate_name(batch_size, lr)
        for batch_size, lr in itertools.product(batch_sizes or [train["batch_size"]], lrs or [train["lr"]])
    ]


def candidate_training(candidate: str, train: Mapping) -> dict:
    """The baseline's training settings with the candidate's batch size and learning rate."""
    batch_size, lr = parse_candidate(candidate)
    return dict(train) | {"batch_size": batch_size, "lr": lr}


def distilled_recipe_twins(recipes: list[Mapping]) -> dict[str, str]:
    """Each recipe trained against a teacher (``distill``) → the recipe it equals without one.

    Its twin has the same method and settings apart from the name and the teacher; a distilled
    recipe without such a twin is left out (there is nothing to compare it with).
    """

    def settings(recipe: Mapping) -> dict:
        return {key: value for key, value in recipe.items() if key not in ("name", "distill")}

    twins = {}
    for recipe in recipes:
        if recipe.get("distill"):
            for other in recipes:
                if not other.get("distill") and settings(other) == settings(recipe):
                    twins[recipe["name"]] = other["name"]
                    break
    return twins
