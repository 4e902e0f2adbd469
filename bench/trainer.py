"""Epoch time of prunequant's trainer against a plain PyTorch DataLoader loop, on the CPU.

Same model (the seed model: 20 channels, one block k=25 s=2 width 140, 10 classes), same data
(2080 random samples of 20 x 101), batch size 32, Adam, one process, interleaved: each round
runs one epoch of every loop, in a shuffled order (prunequant.latency.time_interleaved).

  dataloader      for x, y in DataLoader(TensorDataset(X, Y), batch_size=32, shuffle=True), Adam
  as-built        the engine's loop (batches sliced from resident tensors) with the default Adam
                  and the model as built
  engine-epoch    prunequant.engine._train_one_epoch with the engine's fused Adam: resident
                  tensors, and the model in its training form (prunequant.model.training_form:
                  the last AvgPool1d(2) a crop, exact before the global mean, and the depthwise
                  convs' weight gradient one batched matrix product)
  engine-train    prunequant.engine.train for one epoch: the epoch, validation, resume state

Every loop sums the loss and counts correct predictions, as the engine does.

    python bench/trainer.py > bench/results/trainer-cpu.txt
    python bench/trainer.py --profile       # where each loop's epoch spends its time
    python bench/trainer.py --device cuda > bench/results/trainer-cuda.txt

On CUDA the DataLoader loop keeps its dataset on the CPU and moves each batch to the device, as a
plain loop does; the engine keeps the whole training set on the device. Every loop reads the loss
with .item() at every step, so each timed epoch ends with the device synchronised.
"""

import argparse
import contextlib
import os
import platform
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunequant import engine
from prunequant.latency import cpu_name, describe_speedup, pinned_threads, summarize, time_interleaved
from prunequant.model import BlockSpec, ModelSpec, build_model

SPEC = ModelSpec(20, 10, (BlockSpec(25, 2, 140),))
N_SAMPLES, LENGTH, BATCH_SIZE, LR = 2080, 101, 32, 1e-3


def make_data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(N_SAMPLES, SPEC.in_channels, LENGTH, generator=generator)
    y = torch.randint(0, SPEC.n_classes, (N_SAMPLES,), generator=generator)
    return x, y


def fresh_model_and_optimizer(seed: int, device: torch.device, *, fused: bool = False):
    torch.manual_seed(seed)
    model = build_model(SPEC).to(device)
    return model, torch.optim.Adam(model.parameters(), lr=LR, fused=fused or None)


def dataloader_epoch_runner(x, y, seed: int, device: torch.device):
    """The dataset stays on the CPU; each batch moves to ``device`` inside the loop."""
    model, optimizer = fresh_model_and_optimizer(seed, device)
    loader = DataLoader(
        TensorDataset(x, y),
        batch_size=BATCH_SIZE,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )

    def epoch():
        model.train()
        loss_sum, correct = 0.0, 0
        for batch_x, batch_y in loader:
            batch_x, batch_y = batch_x.to(device, non_blocking=True), batch_y.to(device, non_blocking=True)
            logits = model(batch_x)
            loss = nn.functional.cross_entropy(logits, batch_y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(batch_y)
            correct += (logits.argmax(dim=1) == batch_y).sum().item()
        return loss_sum / len(x), correct / len(x)

    return epoch


def as_built_epoch_runner(x, y, seed: int, device: torch.device):
    """The engine's own loop without its two changes: default Adam, the model as built."""
    model, optimizer = fresh_model_and_optimizer(seed, device)
    x, y = x.to(device), y.to(device)  # resident, as the engine keeps them
    generator = torch.Generator().manual_seed(seed)

    def epoch():
        # The engine's loop itself, with its training form turned into a no-op, so the two
        # loops cannot drift apart.
        with mock.patch.object(engine, "training_form", contextlib.nullcontext):
            return engine._train_one_epoch(model, optimizer, x, y, batch_size=BATCH_SIZE, generator=generator)

    epoch.model = model  # for the agreement check
    return epoch


def engine_epoch_runner(x, y, seed: int, device: torch.device):
    model, optimizer = fresh_model_and_optimizer(seed, device, fused=True)  # as engine.train builds it
    x, y = x.to(device), y.to(device)
    generator = torch.Generator().manual_seed(seed)

    def epoch():
        return engine._train_one_epoch(model, optimizer, x, y, batch_size=BATCH_SIZE, generator=generator)

    epoch.model = model  # for the agreement check
    return epoch


def engine_train_runner(x, y, seed: int, device: torch.device, workdir: Path):
    model, _ = fresh_model_and_optimizer(seed, device)
    config = engine.TrainConfig(
        epochs=1,
        batch_size=BATCH_SIZE,
        lr=LR,
        weight_decay=0.0,
        lr_schedule="none",
        lr_step_epochs=1,
        seed=seed,
    )
    val = (x[:416], y[:416])  # a validation split of the size the default 20% would give

    def epoch():
        return engine.train(
            model,
            (x, y),
            val,
            config,
            device=device,
            best_path=workdir / "best.pt",
            resume_path=workdir / "resume.pt",
            job_fingerprint="bench",
            log=lambda line: None,
        )

    return epoch


def training_form_agreement(x, y, seed: int, device: torch.device, epochs: int = 3) -> tuple[float, float]:
    """Largest |loss difference| and |weight difference| after ``epochs`` of engine-epoch vs
    as-built from the same initial weights and batch order: float rounding only, if exact."""
    as_built = as_built_epoch_runner(x, y, seed, device)
    engine_loop = engine_epoch_runner(x, y, seed, device)
    loss_diff = max(abs(as_built()[0] - engine_loop()[0]) for _ in range(epochs))
    weights = [dict(runner.model.named_parameters()) for runner in (as_built, engine_loop)]
    weight_diff = max((weights[0][name] - weights[1][name]).abs().max().item() for name in weights[0])
    return loss_diff, weight_diff


def profile_epochs(x, y, seed: int, device: torch.device) -> None:
    """torch.profiler of one epoch of each loop: the heaviest operators by their own time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    for name, epoch in (
        ("engine-epoch", engine_epoch_runner(x, y, seed, device)),
        ("as-built", as_built_epoch_runner(x, y, seed, device)),
        ("dataloader", dataloader_epoch_runner(x, y, seed, device)),
    ):
        epoch()  # warm-up
        with profile(activities=activities) as profiler:
            epoch()
        print(f"## {name}")
        print(profiler.key_averages().table(sort_by=sort_by, row_limit=14))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the training rules use 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    device = engine.pick_device(args.device)
    x, y = make_data(args.seed)
    with pinned_threads(args.threads), tempfile.TemporaryDirectory() as tmp:
        if args.profile:
            profile_epochs(x, y, args.seed, device)
            return
        runners = {
            "dataloader": dataloader_epoch_runner(x, y, args.seed, device),
            "as-built": as_built_epoch_runner(x, y, args.seed, device),
            "engine-epoch": engine_epoch_runner(x, y, args.seed, device),
            "engine-train": engine_train_runner(x, y, args.seed, device, Path(tmp)),
        }
        times = time_interleaved(runners, rounds=args.rounds, warmup=1, seed=args.seed)
    references = {name: "dataloader" for name in runners if name != "dataloader"}
    summary = summarize(times, references=references, seed=args.seed)
    where = "the CPU" if device.type == "cpu" else f"CUDA ({torch.cuda.get_device_name(device)})"
    print(f"# Training epoch time on {where}: prunequant's trainer vs a plain DataLoader loop")
    print(
        f"# {time.strftime('%Y-%m-%d', time.gmtime())} | {cpu_name()} | {os.cpu_count()} CPUs, "
        f"{args.threads} torch thread(s), pinned | load average {os.getloadavg()[0]:.1f} | "
        f"Python {platform.python_version()} | torch {torch.__version__}"
    )
    options = f"--rounds {args.rounds} --threads {args.threads} --device {args.device}"
    print(f"# command: python bench/trainer.py {options}")
    print(
        f"# seed model, {N_SAMPLES} random samples of {SPEC.in_channels}x{LENGTH}, batch {BATCH_SIZE}, Adam; "
        f"{args.rounds} interleaved rounds of one epoch each, after one warm-up epoch"
    )
    print("# median ms per epoch [95% bootstrap interval]; speedup = DataLoader time / this loop's time\n")
    loss_diff, weight_diff = training_form_agreement(x, y, args.seed, device)
    for name, entry in summary.items():
        line = f"{name:18s} {entry['median_ms']:8.1f} ms [{entry['low_ms']:.1f}-{entry['high_ms']:.1f}]"
        if "verdict" in entry:
            line += "  " + describe_speedup(entry)
        print(line)
    print(
        f"\nengine-epoch vs as-built after 3 epochs from the same weights and batches: max |loss diff| "
        f"{loss_diff:.1e}, max |weight diff| {weight_diff:.1e} (float rounding: the same training)"
    )


if __name__ == "__main__":
    main()
