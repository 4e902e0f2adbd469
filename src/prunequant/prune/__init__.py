"""Pruning: channel criteria, structured pruning (layer / global scope), schedules,
unstructured magnitude pruning with storage accounting, and per-block sensitivity.

One job per module: :mod:`.criteria` scores channels, :mod:`.structured` removes them through
torch-pruning's dependency graph, :mod:`.schedule` spaces iterative steps, :mod:`.unstructured`
masks single weights, :mod:`.sensitivity` measures each block's tolerance.

Names are re-exported lazily: importing the package loads no submodule, so a job
that imports one module depends on that module only (see :mod:`prunequant.workflow.code_digests`).
"""

from __future__ import annotations

from prunequant.lazy import lazy_exports

# public name → the module that defines it
_EXPORTS = {
    "SettingError": "prunequant.names",
    "block_names": "prunequant.names",
    "not_prunable_problems": "prunequant.names",
    "CRITERIA": "prunequant.prune.criteria",
    "channel_scores": "prunequant.prune.criteria",
    "SPACINGS": "prunequant.prune.schedule",
    "channels_to_remove_at_step": "prunequant.prune.schedule",
    "iterative_rates": "prunequant.prune.schedule",
    "iterative_step_rates": "prunequant.prune.schedule",
    "split_epochs": "prunequant.prune.schedule",
    "block_sensitivity": "prunequant.prune.sensitivity",
    "rates_within_drop": "prunequant.prune.sensitivity",
    "SCOPES": "prunequant.prune.structured",
    "block_widths": "prunequant.prune.structured",
    "channels_to_remove": "prunequant.prune.structured",
    "n_channels_to_remove": "prunequant.prune.structured",
    "prune_channels": "prunequant.prune.structured",
    "prune_structured": "prunequant.prune.structured",
    "SPARSITY_SCOPES": "prunequant.prune.unstructured",
    "apply_masks": "prunequant.prune.unstructured",
    "magnitude_masks": "prunequant.prune.unstructured",
    "mask_holder": "prunequant.prune.unstructured",
    "maskable_layers": "prunequant.prune.unstructured",
    "sparsity_record": "prunequant.prune.unstructured",
    "storage_bytes": "prunequant.prune.unstructured",
    "storage_explanation": "prunequant.prune.unstructured",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
