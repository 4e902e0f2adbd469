"""A quantization-aware trained model on file, saved and loaded back with ``weights_only``: the fp32
architecture, the fake-quant state and its settings (the stage that trains it is
:mod:`prunequant.stages.qat`)."""

from __future__ import annotations

import json
import os

import torch

from prunequant.checkpoint import atomic_torch_save
from prunequant.model import ModelSpec, build_model
from prunequant.quantize.fake_quant import FakeQuantModel
from prunequant.quantize.fold import deployment_model

__all__ = ["save_qat", "load_qat"]


def save_qat(model: FakeQuantModel, path: str | os.PathLike, spec: ModelSpec, metadata: dict) -> None:
    """The fp32 architecture spec, the fake-quant state dict and settings; loads with weights_only."""
    payload = {
        "spec": spec.to_dict(),
        "per_channel": model.per_channel,
        "reduce_range": model.reduce_range,
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "metadata_json": json.dumps(metadata),
    }
    atomic_torch_save(payload, path)


def load_qat(checkpoint_path: str | os.PathLike) -> FakeQuantModel:
    """The fake-quant model saved by :func:`run_qat`, in eval mode on the CPU."""
    payload = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    deployed = deployment_model(build_model(ModelSpec.from_dict(payload["spec"])))
    model = FakeQuantModel(
        deployed, per_channel=bool(payload["per_channel"]), reduce_range=bool(payload["reduce_range"])
    )
    model.load_state_dict(payload["state_dict"])
    return model.eval()
