#!/usr/bin/env bash
# Run by Snakemake inside the new conda environment of envs/tflm.yaml (--sdm conda): installs the
# converter's pinned packages without their declared dependencies (see envs/tflm.lock), and this
# library without its own (the converter imports only its torch parts).
set -euo pipefail
envs="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pip install --no-deps -r "$envs/tflm.lock"
pip install --no-deps -e "$envs/.."
