"""Latency that survives a busy machine: interleaved rounds, pinned threads, intervals.

A single timing on a shared machine says little: another job, a frequency change or the
page cache can move it by a third. So every variant of one runtime is timed in the same
process, in rounds: each round runs every variant once, in a freshly shuffled order, so a
disturbance hits all variants alike instead of whichever happened to run during it. Each
latency is the median over rounds with a bootstrap interval of that median, and each speedup
is computed from per-round ratios (the variant and its reference ran seconds apart, in the
same conditions), again as a median with a bootstrap interval. A speedup whose interval
contains 1.0 is reported as "no measurable difference".
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from time import perf_counter

import numpy as np
import torch
from scipy import stats

from prunequant.measure import make_onnx_runner, make_torch_runner
from prunequant.quantize.runtime import OnnxClassifier
from prunequant.variants import TIMED_RUNTIMES

__all__ = [
    "VERDICTS",
    "time_interleaved",
    "summarize",
    "describe_speedup",
    "pinned_threads",
    "cpu_name",
    "time_variants",
]

VERDICTS = ("faster", "slower", "no measurable difference")


def time_interleaved(
    runners: Mapping[str, Callable[[], object]],
    *,
    rounds: int,
    warmup: int,
    seed: int,
    calls_per_round: int = 1,
) -> dict[str, np.ndarray]:
    """Milliseconds per call of every runner, one value per round.

    First ``warmup`` untimed calls of every runner (interleaved too, so all start equally
    warm); then ``rounds`` rounds, each running every runner ``calls_per_round`` times in a
    row, runners in an order shuffled per round by a generator seeded with ``seed``.
    Several calls per round average out the clock's resolution for calls of a few µs.
    """
    if not runners:
        raise ValueError("no runners to time")
    if rounds < 1 or calls_per_round < 1:
        raise ValueError(f"rounds and calls_per_round must be >= 1, got {rounds} and {calls_per_round}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    names = list(runners)
    for _ in range(warmup):
        for name in names:
            runners[name]()
    rng = np.random.default_rng(seed)
    times = {name: np.empty(rounds) for name in names}
    for round_index in range(rounds):
        for position in rng.permutation(len(names)):
            name = names[position]
            run = runners[name]
            start = perf_counter()
            for _ in range(calls_per_round):
                run()
            elapsed = perf_counter() - start
            times[name][round_index] = elapsed * 1000.0 / calls_per_round
    return times


def _median_interval(
    values: np.ndarray, *, confidence: float, n_boot: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile bootstrap interval of the median (BCa misbehaves on the median's ties)."""
    if np.all(values == values[0]):  # one round, or a clock too coarse to tell rounds apart
        return float(values[0]), float(values[0])
    result = stats.bootstrap(
        (values,),
        np.median,
        confidence_level=confidence,
        n_resamples=n_boot,
        method="percentile",
        vectorized=True,
        random_state=rng,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _verdict(low: float, high: float) -> str:
    if low > 1.0:
        return "faster"
    if high < 1.0:
        return "slower"
    return "no measurable difference"


def summarize(
    times: Mapping[str, np.ndarray],
    *,
    references: Mapping[str, str],
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, dict]:
    """Median and bootstrap interval of every latency, and of every speedup over its reference.

    ``times`` comes from :func:`time_interleaved`; ``references`` maps a variant to the
    variant it is compared with. Per name: ``median_ms``, ``low_ms``, ``high_ms``; for a
    name with a reference also ``reference``, ``speedup`` (reference time / variant time,
    the median of per-round ratios: both ran in the same round), ``speedup_low``,
    ``speedup_high`` and ``verdict`` ("faster", "slower" or "no measurable difference" when
    the interval contains 1.0).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    for name, reference in references.items():
        if name not in times or reference not in times:
            raise ValueError(
                f"speedup of {name!r} over {reference!r}: both must be timed; timed: {list(times)}"
            )
        if len(times[name]) != len(times[reference]):
            raise ValueError(f"{name!r} and {reference!r} were timed in different numbers of rounds")
    rng = np.random.default_rng(seed)
    summary: dict[str, dict] = {}
    for name, values in times.items():
        values = np.asarray(values, dtype=float)
        low, high = _median_interval(values, confidence=confidence, n_boot=n_boot, rng=rng)
        summary[name] = {"median_ms": float(np.median(values)), "low_ms": low, "high_ms": high}
    for name, reference in references.items():
        ratios = np.asarray(times[reference], dtype=float) / np.asarray(times[name], dtype=float)
        low, high = _median_interval(ratios, confidence=confidence, n_boot=n_boot, rng=rng)
        summary[name].update(
            reference=reference,
            speedup=float(np.median(ratios)),
            speedup_low=low,
            speedup_high=high,
            verdict=_verdict(low, high),
        )
    return summary


def describe_speedup(entry: Mapping[str, object]) -> str:
    """One entry of :func:`summarize` as text that always names its baseline.

    ``"2.10x faster than fp32 (1.95-2.31)"`` or ``"no measurable difference from fp32
    (0.94-1.07x)"``.
    """
    reference = entry["reference"]
    interval = f"{entry['speedup_low']:.2f}-{entry['speedup_high']:.2f}"
    if entry["verdict"] == "no measurable difference":
        return f"no measurable difference from {reference} ({interval}x)"
    return f"{entry['speedup']:.2f}x ({interval}) {entry['verdict']} than {reference}"


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[list[int] | None]:
    """Run torch with ``threads`` threads on ``threads`` fixed cores; restore both afterwards.

    Pinning keeps the scheduler from moving the timing threads between cores mid-run
    (cold caches, another core's frequency) and from spreading more threads than asked
    over the machine, so every round of every variant sees the same cores. Yields the
    cores used, or None where the platform has no ``sched_setaffinity`` (macOS, Windows).
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous_threads = torch.get_num_threads()
    previous_cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cores = None
    torch.set_num_threads(threads)
    try:
        if previous_cores is not None:
            cores = sorted(previous_cores)[:threads]
            os.sched_setaffinity(0, cores)
        yield cores
    finally:
        torch.set_num_threads(previous_threads)
        if previous_cores is not None:
            os.sched_setaffinity(0, previous_cores)


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo where there is one, else what platform knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _open_artifacts(artifacts: Mapping[str, str | os.PathLike], runtime: str, threads: int) -> dict:
    if runtime == "torch":
        from prunequant.checkpoint import load_model  # only the torch runtime needs checkpoints

        return {name: load_model(path)[0] for name, path in artifacts.items()}
    if runtime == "onnxruntime":
        return {name: OnnxClassifier(path, threads=threads) for name, path in artifacts.items()}
    raise ValueError(f"unknown runtime {runtime!r}; known: {TIMED_RUNTIMES}")


def _time_every_batch_size(
    artifacts: Mapping[str, str | os.PathLike],
    *,
    runtime: str,
    n_channels: int,
    length: int,
    threads: int,
    warmup: int,
    rounds: int,
    seed: int,
    batch_sizes: tuple[int, ...],
) -> tuple[dict[int, dict[str, np.ndarray]], list[int] | None]:
    """Per batch size, the per-round times of every artifact; and the cores they ran on."""
    models = _open_artifacts(artifacts, runtime, threads)
    make_runner = make_torch_runner if runtime == "torch" else make_onnx_runner
    times = {}
    with pinned_threads(threads) as cores:
        for batch_size in batch_sizes:
            shape = {"batch_size": batch_size, "n_channels": n_channels, "length": length, "threads": threads}
            runners = {name: make_runner(model, **shape, seed=seed) for name, model in models.items()}
            times[batch_size] = time_interleaved(
                runners, rounds=rounds, warmup=warmup, seed=seed + batch_size
            )
    return times, cores


def _record(runtime: str, threads: int, rounds: int, warmup: int, cores, batch_sizes, variants) -> dict:
    return {
        "runtime": runtime,
        "threads": threads,
        "rounds": rounds,
        "warmup": warmup,
        "cpu": cpu_name(),
        "cores": cores,
        "batch_sizes": list(batch_sizes),
        "variants": variants,
    }


def _check_references(artifacts: Mapping[str, object], references: Mapping[str, str]) -> None:
    unknown = {name for pair in references.items() for name in pair} - set(artifacts)
    if unknown:
        raise ValueError(f"references name variants that are not timed: {sorted(unknown)}")


def time_variants(
    artifacts: Mapping[str, str | os.PathLike],
    *,
    runtime: str,
    references: Mapping[str, Mapping[str, str]],
    n_channels: int,
    length: int,
    threads: int,
    warmup: int,
    rounds: int,
    seed: int,
    batch_sizes: tuple[int, ...] = (1, 64),
) -> dict:
    """Latency of every artifact of one runtime, timed together in interleaved rounds, with
    speedups against several named reference maps over the same timings.

    ``artifacts`` maps a variant name to a torch checkpoint (runtime "torch") or an ONNX file
    (runtime "onnxruntime"); each is opened once. Every variant gets the same fixed random batch
    (from ``seed``). ``references`` maps a label (e.g. "baseline", "parent") to a variant →
    reference map. Returns a JSON-able dict: ``runtime``, ``threads``, ``rounds``, ``warmup``,
    ``cpu``, ``batch_sizes``, ``cores`` (the pinned cores, or None) and ``variants``: ``{name:
    {"batch<b>": summary}}``; each summary holds ``median_ms``, ``low_ms``, ``high_ms`` and
    ``speedups``: per label under which the variant has a reference, ``{reference, speedup,
    speedup_low, speedup_high, verdict}``.
    """
    for reference_map in references.values():
        _check_references(artifacts, reference_map)
    settings = {"runtime": runtime, "threads": threads, "rounds": rounds, "warmup": warmup}
    times, cores = _time_every_batch_size(
        artifacts, n_channels=n_channels, length=length, seed=seed, batch_sizes=batch_sizes, **settings
    )
    variants: dict[str, dict] = {name: {} for name in artifacts}
    speedup_fields = ("reference", "speedup", "speedup_low", "speedup_high", "verdict")
    for batch_size, batch_times in times.items():
        for name, summary in summarize(batch_times, references={}, seed=seed).items():
            variants[name][f"batch{batch_size}"] = dict(summary, speedups={})
        for label, reference_map in references.items():
            for name, summary in summarize(batch_times, references=reference_map, seed=seed).items():
                if name in reference_map:
                    speedup = {field: summary[field] for field in speedup_fields}
                    variants[name][f"batch{batch_size}"]["speedups"][label] = speedup
    return _record(cores=cores, batch_sizes=batch_sizes, variants=variants, **settings)
