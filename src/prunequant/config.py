"""Configuration checks that run before any job starts.

The JSON schema is the single source of allowed keys, ranges and defaults;
this module turns its verdicts into one line per problem, naming the key.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import yaml

from prunequant.variants import configured_models, parse_model

__all__ = [
    "config_problems",
    "missing_data_files",
    "model_problems",
    "study_problems",
    "active_data_settings",
    "data_files",
    "config_hash",
    "training_gpus",
]

# The data keys each source reads; the others do not affect its result.
SOURCE_KEYS = {
    "bundled": ("bundled_name",),
    "npz": ("npz_path",),
    "ts": ("ts_train", "ts_test"),
    "audio": ("audio",),
}
SHARED_DATA_KEYS = (
    "source",
    "length",
    "length_method",
    "val_fraction",
    "test_fraction",
    "seed",
    "min_class_samples",
    "test_groups",
    "val_groups",
)


def _key_path(path) -> str:
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key or "(top level)"


def config_problems(config: dict, schema_path: str | Path) -> list[str]:
    """Every schema violation in ``config`` as 'config key X: problem', sorted by key."""
    # libyaml's loader when PyYAML has it: the pure-Python one costs every snakemake call ~40 ms here.
    schema = yaml.load(Path(schema_path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return _schema_violations(config, schema)


def _schema_violations(config: dict, schema: dict) -> list[str]:
    import jsonschema  # only where a config is validated: the module's other checks do without it

    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    problems = []
    for error in validator.iter_errors(config):
        # A "oneOf" failure says only that nothing matched; the closest branch says what is wrong.
        error = jsonschema.exceptions.best_match([error, *error.context]) if error.context else error
        message = error.message
        if "propertyNames" in error.schema_path:
            message = f"{error.instance!r} does not apply to this method (see config.yaml for its keys)"
        problems.append(f"config key '{_key_path(error.absolute_path)}': {message}")
    return sorted(set(problems))


def missing_data_files(data: dict) -> list[str]:
    """Data paths named in the ``data`` section for the chosen source that do not exist."""
    source = data.get("source")
    if source == "npz":
        wanted = {"data.npz_path": (data.get("npz_path"), "file")}
    elif source == "ts":
        wanted = {
            "data.ts_train": (data.get("ts_train"), "file"),
            "data.ts_test": (data.get("ts_test"), "file"),
        }
    elif source == "audio":
        wanted = {"data.audio.root": ((data.get("audio") or {}).get("root"), "folder")}
    else:
        wanted = {}
    problems = []
    for key, (path, kind) in wanted.items():
        if path is None:
            continue
        exists = Path(path).is_file() if kind == "file" else Path(path).is_dir()
        if not exists:
            problems.append(f"config key '{key}': {kind} '{path}' does not exist")
    return problems


def _output_length(arch: str, blocks: list[dict], length: int) -> int:
    # Mirrors ModelSpec.output_length without importing torch: every block is a strided
    # depthwise conv (residual blocks pad it to "same" first) followed by AvgPool1d(2).
    for block in blocks:
        padding = block["kernel_size"] - 1 if arch == "residual" else 0
        length = (length + padding - block["kernel_size"]) // block["stride"] + 1
        if length < 1:
            return length
        length //= 2
    return length


def model_problems(blocks: list[dict], length: int, arch: str = "separable") -> list[str]:
    """Why the configured blocks cannot run on series of ``length`` steps, if they cannot."""
    if _output_length(arch, blocks, length) >= 1:
        return []
    return [
        f"config key 'model.blocks': {len(blocks)} block(s) shrink a series of data.length={length} steps "
        "to nothing; use a longer data.length, smaller kernel_size or stride, or fewer blocks"
    ]


def active_data_settings(data: dict) -> dict:
    """The ``data`` settings the chosen source reads: changing any other key changes nothing."""
    keys = SHARED_DATA_KEYS + SOURCE_KEYS[data["source"]]
    return {key: data[key] for key in keys if key in data}


def data_files(data: dict) -> list[str]:
    """The files the chosen source reads, so that editing, adding or removing one reruns the data stage."""
    source = data["source"]
    if source == "npz":
        paths = [data["npz_path"]]
    elif source == "ts":
        paths = [data["ts_train"], data.get("ts_test")]
    elif source == "audio":
        from prunequant.data.audio import wav_files  # the data package only for an audio source

        paths = wav_files(Path(data["audio"]["root"]))
    else:
        paths = []
    return [str(path) for path in paths if path is not None]


def study_problems(config: dict) -> list[str]:
    """Settings that are valid one by one but not together, one line each, naming the key."""
    problems = []
    n_blocks = len(config["model"]["blocks"])
    for index, name in enumerate(config["model"]["not_prunable"]):
        if int(name.split(".")[1]) >= n_blocks:
            problems.append(
                f"config key 'model.not_prunable[{index}]': {name!r} matches no block; "
                f"the model has blocks.0 to blocks.{n_blocks - 1}"
            )
    if (
        len(set(config["model"]["not_prunable"])) == n_blocks
        and not problems
        and configured_models(config["prune"]) != ["baseline"]
    ):
        problems.append("config key 'model.not_prunable': every block is listed, so nothing can be pruned")
    models = configured_models(config["prune"])
    wanted = config["quantize"]["models"]
    for index, name in enumerate([] if wanted == "all" else wanted):
        if name not in models:
            problems.append(
                f"config key 'quantize.models[{index}]': {name!r} is not a configured model; "
                f"configured: {', '.join(models)}"
            )
    problems += distillation_problems(config, models)
    names = [recipe["name"] for recipe in config["quantize"]["recipes"]]
    for name in sorted({name for name in names if names.count(name) > 1}):
        problems.append(f"config key 'quantize.recipes': the name {name!r} is used more than once")
    data = config["data"]
    group_regex = (data.get("audio") or {}).get("group_regex") if data["source"] == "audio" else None
    for key in ("test_groups", "val_groups"):
        if data.get(key) and not group_regex:
            problems.append(f"config key 'data.{key}': needs data.source 'audio' with data.audio.group_regex")
    if data["folds"] == "leave_one_group_out":
        if not group_regex:
            problems.append(
                "config key 'data.folds': leave_one_group_out needs data.source 'audio' with "
                "data.audio.group_regex"
            )
        if data.get("test_groups"):
            problems.append(
                "config key 'data.test_groups': leave_one_group_out chooses the test group itself"
            )
    return problems


def config_hash(config: dict) -> str:
    """A short fingerprint of the whole configuration (key order does not matter).

    A value JSON cannot hold (a YAML date, say) enters by its repr, so a config the schema will
    reject still gets a fingerprint instead of an error.
    """
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=repr).encode()).hexdigest()[:12]


def training_gpus(setting: str | int, device: str, *, gpu_visible: bool | None = None) -> int:
    """GPUs a training job holds (its `gpu` resource).

    "auto": one when this machine shows an NVIDIA device and training may use it, else none,
    so that on a CPU machine training jobs run side by side instead of queueing for a GPU
    that does not exist. On a cluster whose submit host has no GPU, set 1 in the config.
    """
    if setting != "auto":
        return int(setting)
    if gpu_visible is None:
        gpu_visible = Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None
    return int(gpu_visible and device != "cpu")


def distillation_problems(config: dict, models: list[str]) -> list[str]:
    """Distillation names that are not defined or defined twice, and teachers that are no model
    of the study (or are distilled students themselves), one line each, naming the key."""
    problems = []
    defined = [entry["name"] for entry in config["distillation"]]
    for name in sorted({name for name in defined if defined.count(name) > 1}):
        problems.append(f"config key 'distillation': the name {name!r} is used more than once")
    for index, entry in enumerate(config["distillation"]):
        teacher = entry["teacher"]
        if teacher not in models:
            problems.append(
                f"config key 'distillation[{index}].teacher': {teacher!r} is not a model of the study; "
                f"configured: {', '.join(models)}"
            )
        elif parse_model(teacher).distill:
            problems.append(
                f"config key 'distillation[{index}].teacher': {teacher!r} is itself a distilled student; "
                "name the model it was distilled from"
            )
    prune = config["prune"]
    lists = [
        (f"prune.structured[{i}].distill", entry.get("distill", []))
        for i, entry in enumerate(prune["structured"])
    ]
    lists += [
        (f"prune.{section}.distill", prune[section].get("distill", []))
        for section in ("unstructured", "from_scratch")
    ]
    uses = [(f"{key}[{position}]", name) for key, names in lists for position, name in enumerate(names)]
    uses += [
        (f"quantize.recipes[{i}].distill", recipe["distill"])
        for i, recipe in enumerate(config["quantize"]["recipes"])
        if "distill" in recipe
    ]
    for key, name in uses:
        if name not in defined:
            problems.append(
                f"config key '{key}': {name!r} names no distillation setting; "
                f"defined: {', '.join(defined) or 'none (add one under distillation:)'}"
            )
    return problems
