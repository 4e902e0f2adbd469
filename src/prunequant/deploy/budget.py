"""Device budgets: how much RAM, flash and compute a variant may use, and which variants fit.

A budget is a named device preset, explicit limits, or both (explicit limits override the preset's):
``ram_bytes`` (the arena, plus what the application reserves for itself), ``flash_bytes`` (the model
file) and ``max_macs`` (multiply-accumulates per inference). Each limit is a number of bytes (MACs),
or a share of the baseline's own cost written as a percentage string, e.g. ``"50%"`` (as TensorFlow
Model Optimization and Sony MCT state their targets). A limit left out is not checked.

Presets are the memory of one named reference part of each class (KB = 1024 bytes, as datasheets
count), the whole of it: what the application and its stack take is ``reserved_ram_bytes``.

- ``cortex-m4``: 256 KB SRAM, 1 MB flash: Nordic nRF52840 (Cortex-M4F, 64 MHz; nRF52840 Product
  Specification), the chip of the Arduino Nano 33 BLE Sense that TFLM's micro_speech example runs on.
- ``cortex-m0plus``: 32 KB SRAM, 256 KB flash: Microchip ATSAMD21G18 (Cortex-M0+, 48 MHz; SAM D21
  family datasheet), the chip of the Arduino Zero and MKR boards.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from prunequant.errors import UserError

__all__ = [
    "KB",
    "DEVICE_PRESETS",
    "LIMITS",
    "Budget",
    "resolve_budget",
    "fits",
    "fits_all",
    "budget_verdict",
]

KB = 1024
LIMITS = {"ram_bytes": "ram_bytes", "flash_bytes": "flash_bytes", "max_macs": "macs"}  # limit -> cost key
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


@dataclass(frozen=True)
class Budget:
    name: str  # the preset's name, or "custom"
    ram_bytes: int | None = None  # None: not limited
    flash_bytes: int | None = None
    max_macs: int | None = None

    def limits(self) -> dict[str, int]:
        """The limits that are set, keyed as in LIMITS."""
        return {key: getattr(self, key) for key in LIMITS if getattr(self, key) is not None}


DEVICE_PRESETS = {
    "cortex-m4": Budget(name="cortex-m4", ram_bytes=256 * KB, flash_bytes=1024 * KB),
    "cortex-m0plus": Budget(name="cortex-m0plus", ram_bytes=32 * KB, flash_bytes=256 * KB),
}


def _limit_value(key: str, value: object, baseline: Mapping[str, float]) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        percent = _PERCENT.match(value)
        if not percent:
            raise UserError(f"budget {key} {value!r} is neither a number nor a percentage such as '50%'")
        cost_key = LIMITS[key]
        if baseline.get(cost_key) is None:
            raise UserError(f"budget {key} {value!r} is a share of the baseline, which has no {cost_key}")
        return math.floor(float(percent.group(1)) / 100 * baseline[cost_key])
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise UserError(f"budget {key} {value!r} must be a positive number or a percentage such as '50%'")
    return int(value)


def resolve_budget(setting: str | Mapping, baseline: Mapping[str, float] | None = None) -> Budget:
    """The budget a setting describes: a preset name, or ``{device?, ram_bytes?, flash_bytes?, max_macs?}``.

    ``baseline`` holds the baseline's costs (``ram_bytes``, ``flash_bytes``, ``macs``) that
    percentage limits are shares of.
    """
    baseline = baseline or {}
    if isinstance(setting, str):
        setting = {"device": setting}
    unknown = sorted(set(setting) - {"device", *LIMITS})
    if unknown:
        raise UserError(f"budget key {unknown[0]!r} is not known: use device, {', '.join(LIMITS)}")
    device = setting.get("device")
    if device is not None and device not in DEVICE_PRESETS:
        raise UserError(f"budget device {device!r} is not a preset: use one of {sorted(DEVICE_PRESETS)}")
    preset = DEVICE_PRESETS[device] if device else Budget(name="custom")
    limits = {key: _limit_value(key, setting[key], baseline) for key in LIMITS if key in setting}
    if not preset.limits() and not any(value is not None for value in limits.values()):
        raise UserError("a budget needs a device preset or at least one of " + ", ".join(LIMITS))
    return Budget(name=preset.name, **{**preset.limits(), **limits})


def _needed(limit: str, costs: Mapping[str, float], reserved_ram_bytes: int) -> float | None:
    cost = costs.get(LIMITS[limit])
    if cost is None:
        return None
    return cost + reserved_ram_bytes if limit == "ram_bytes" else cost


def fits(costs: Mapping[str, float], budget: Budget, reserved_ram_bytes: int = 0) -> dict[str, bool | None]:
    """Per limit of ``budget``: True (fits), False (does not) or None (the variant has no such cost).

    ``costs`` holds ``ram_bytes`` (e.g. the measured TFLM arena), ``flash_bytes`` and ``macs``; RAM
    must hold the variant's ``ram_bytes`` plus ``reserved_ram_bytes`` for the application.
    """
    verdicts = {}
    for limit, allowed in budget.limits().items():
        needed = _needed(limit, costs, reserved_ram_bytes)
        verdicts[limit] = None if needed is None else needed <= allowed
    return verdicts


def fits_all(costs: Mapping[str, float], budget: Budget, reserved_ram_bytes: int = 0) -> bool:
    """True when every limit is met; a cost that is unknown for a set limit does not fit."""
    return all(verdict is True for verdict in fits(costs, budget, reserved_ram_bytes).values())


def _needs(costs: Mapping[str, float], budget: Budget, reserved_ram_bytes: int) -> dict[str, float | None]:
    return {limit: _needed(limit, costs, reserved_ram_bytes) for limit in budget.limits()}


def _worst_share(costs: Mapping[str, float], budget: Budget, reserved_ram_bytes: int) -> float:
    """The largest cost / limit ratio: above 1 means over budget by that factor (unknown: infinite)."""
    limits = budget.limits()
    shares = [
        math.inf if needed is None else needed / limits[limit]
        for limit, needed in _needs(costs, budget, reserved_ram_bytes).items()
    ]
    return max(shares, default=0.0)


def _describe(budget: Budget, reserved_ram_bytes: int) -> str:
    parts = []
    for limit, allowed in budget.limits().items():
        text = f"{limit} {allowed}"
        if limit == "ram_bytes" and reserved_ram_bytes:
            text += f" ({reserved_ram_bytes} reserved for the application)"
        parts.append(text)
    return f"{budget.name} ({', '.join(parts)})"


def budget_verdict(
    variants: Mapping[str, Mapping[str, float]], budget: Budget, reserved_ram_bytes: int = 0
) -> dict:
    """Which variants fit; when none does, a plain message naming the closest one and what it needs.

    Returns ``{"fitting": [names], "closest": name or None, "message": str or None}``; the closest
    is the variant whose worst cost / limit ratio is smallest.
    """
    fitting = [name for name, costs in variants.items() if fits_all(costs, budget, reserved_ram_bytes)]
    if fitting or not variants:
        message = (
            None if variants else f"no variants to check against {_describe(budget, reserved_ram_bytes)}"
        )
        return {"fitting": fitting, "closest": None, "message": message}
    closest = min(variants, key=lambda name: _worst_share(variants[name], budget, reserved_ram_bytes))
    limits = budget.limits()
    needs = _needs(variants[closest], budget, reserved_ram_bytes)
    over = [
        f"{limit} {needed:.0f} ({needed / limits[limit]:.0%} of the limit)"
        for limit, needed in needs.items()
        if needed is not None and needed > limits[limit]
    ]
    unknown = [f"{limit} not measured" for limit, needed in needs.items() if needed is None]
    detail = "; ".join(over + unknown)
    message = (
        f"no variant fits {_describe(budget, reserved_ram_bytes)}: the closest is {closest}, "
        f"which needs {detail}"
    )
    return {"fitting": [], "closest": closest, "message": message}
