"""What the TFLite converter's environment costs: install seconds and size on disk.

Builds ``envs/tflm.lock`` into fresh virtual environments in a temporary folder, as README's set-up
would (``python3.11 -m venv`` then ``pip install --no-deps -r envs/tflm.lock``): once with pip's
cache as it is (warm after a first install) and once with ``--no-cache-dir`` (every wheel
fetched again; torch comes from this machine's local wheel folder either way). Prints the
seconds, the size of each environment and of its largest packages, and checks that the
environment converts (``import litert_torch``)::

    python bench/tflm_env.py > bench/results/tflm-env.txt
"""

import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "envs" / "tflm.lock"


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def build(folder: Path, *pip_options: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    subprocess.run(
        [str(folder / "bin" / "pip"), "install", "-q", "--no-deps", *pip_options, "-r", str(LOCK)],
        check=True,
        stderr=subprocess.DEVNULL,  # pip's notes on this machine's extra index folders
    )
    return time.perf_counter() - started


def main() -> None:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"# {' '.join(sys.argv)}")
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, load average {load}")
    print(f"# Python {platform.python_version()}; lock: envs/tflm.lock, {len(lock_lines())} packages\n")
    with tempfile.TemporaryDirectory() as root:
        for label, options in (
            ("warm pip cache", ()),
            ("no pip cache (--no-cache-dir)", ("--no-cache-dir",)),
        ):
            folder = Path(root) / label.split()[0]
            seconds = build(folder, *options)
            print(f"install, {label}: {seconds:.0f} s; environment {folder_mb(folder):.0f} MB")
        site = next((Path(root) / "warm" / "lib").glob("python*/site-packages"))
        sizes = sorted(((folder_mb(p), p.name) for p in site.iterdir() if p.is_dir()), reverse=True)
        print("largest packages: " + ", ".join(f"{name} {mb:.0f} MB" for mb, name in sizes[:8]))
        started = time.perf_counter()
        subprocess.run(
            [str(Path(root) / "warm" / "bin" / "python"), "-c", "import litert_torch"],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        print(f"import litert_torch: {time.perf_counter() - started:.1f} s (a fresh interpreter)")


def lock_lines() -> list[str]:
    return [line for line in LOCK.read_text().splitlines() if line and not line.startswith("#")]


if __name__ == "__main__":
    main()
