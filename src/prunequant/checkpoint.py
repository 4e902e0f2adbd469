"""Self-describing checkpoints: architecture, weights and metadata in one file.

Files are written with ``torch.save`` and read with ``weights_only=True``, so
loading never unpickles arbitrary objects.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from prunequant.model import ModelSpec, build_model, spec_of

__all__ = ["save_model", "load_model", "atomic_torch_save"]


def atomic_torch_save(payload: dict, path: str | os.PathLike) -> None:
    """Write to a temporary file and rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def save_model(model: nn.Module, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Save weights, the spec that rebuilds the model (architecture included) and JSON-able metadata."""
    payload = {
        "spec": spec_of(model).to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        # JSON text keeps arbitrary metadata loadable under weights_only=True.
        "metadata_json": json.dumps(metadata or {}),
    }
    atomic_torch_save(payload, path)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model (pruned or not) from a checkpoint written by :func:`save_model`."""
    payload = torch.load(path, map_location=device, weights_only=True)
    model = build_model(ModelSpec.from_dict(payload["spec"]))
    model.load_state_dict(payload["state_dict"])
    model.to(device).eval()
    return model, json.loads(payload["metadata_json"])
