import pytest

from prunequant.deploy.budget import KB, Budget, budget_verdict, fits, fits_all, resolve_budget
from prunequant.errors import UserError

BASELINE = {"ram_bytes": 9296, "flash_bytes": 11872, "macs": 79000}


def test_presets_resolve_to_their_reference_parts_memory():
    assert resolve_budget("cortex-m4") == Budget("cortex-m4", ram_bytes=256 * KB, flash_bytes=1024 * KB)
    assert resolve_budget({"device": "cortex-m0plus"}) == Budget(
        "cortex-m0plus", ram_bytes=32 * 1024, flash_bytes=256 * 1024
    )


def test_explicit_limits_override_the_preset_and_add_to_it():
    budget = resolve_budget({"device": "cortex-m0plus", "ram_bytes": 20_000, "max_macs": 50_000})
    assert budget == Budget("cortex-m0plus", ram_bytes=20_000, flash_bytes=256 * KB, max_macs=50_000)


def test_percentages_are_shares_of_the_baseline():
    budget = resolve_budget({"ram_bytes": "50%", "flash_bytes": "12.5 %", "max_macs": 40_000}, BASELINE)
    assert budget == Budget("custom", ram_bytes=4648, flash_bytes=1484, max_macs=40_000)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"ram_bytes": "half"}, "percentage"),
        ({"ram_bytes": -1}, "positive"),
        ({"ram_bytes": True}, "positive"),
        ({"flash": 1000}, "'flash' is not known"),
        ("cortex-m33", "not a preset"),
        ({}, "needs a device preset"),
    ],
)
def test_bad_settings_name_the_key(setting, message):
    with pytest.raises(UserError, match=message):
        resolve_budget(setting, BASELINE)


def test_a_percentage_needs_the_baseline_cost():
    with pytest.raises(UserError, match="no macs"):
        resolve_budget({"max_macs": "50%"}, {"ram_bytes": 1000})


def test_fits_checks_each_set_limit_with_the_reserved_ram():
    budget = Budget("custom", ram_bytes=10_000, flash_bytes=12_000)
    costs = {"ram_bytes": 9296, "flash_bytes": 11872, "macs": 79000}
    assert fits(costs, budget) == {"ram_bytes": True, "flash_bytes": True}
    assert fits(costs, budget, reserved_ram_bytes=1000) == {"ram_bytes": False, "flash_bytes": True}
    assert fits_all(costs, budget) and not fits_all(costs, budget, reserved_ram_bytes=1000)


def test_an_unmeasured_cost_is_unknown_and_does_not_fit():
    budget = Budget("custom", ram_bytes=10_000, flash_bytes=12_000)
    fp32_variant = {"flash_bytes": 40_000}  # no TFLM arena
    assert fits(fp32_variant, budget) == {"ram_bytes": None, "flash_bytes": False}
    assert not fits_all(fp32_variant, budget)


def test_verdict_lists_the_fitting_variants():
    variants = {"baseline": BASELINE, "pruned": {"ram_bytes": 5824, "flash_bytes": 8440, "macs": 40000}}
    verdict = budget_verdict(variants, Budget("custom", ram_bytes=8000))
    assert verdict == {"fitting": ["pruned"], "closest": None, "message": None}


def test_nothing_fits_gives_a_plain_message_naming_the_closest():
    variants = {
        "baseline": BASELINE,
        "pruned": {"ram_bytes": 5824, "flash_bytes": 8440, "macs": 40000},
        "fp32": {"flash_bytes": 47000},
    }
    verdict = budget_verdict(variants, resolve_budget("cortex-m0plus"), reserved_ram_bytes=30 * KB)
    assert verdict["fitting"] == [] and verdict["closest"] == "pruned"
    assert verdict["message"] == (
        "no variant fits cortex-m0plus (ram_bytes 32768 (30720 reserved for the application), "
        "flash_bytes 262144): the closest is pruned, which needs ram_bytes 36544 (112% of the limit)"
    )
