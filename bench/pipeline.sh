#!/usr/bin/env bash
# Times a clean run of the default pipeline, summarises Snakemake's per-job benchmark files and
# measures the per-job start-up overhead of that run.
#   bash bench/pipeline.sh [output.txt]      (run from an activated environment)
set -euo pipefail
cd "$(dirname "$0")/.."
output=${1:-bench/results/pipeline-cpu.txt}
rm -rf results logs benchmarks .prunequant-resume
started=$(date +%s.%N)
snakemake --cores 4 --resources gpu=1 --quiet rules
finished=$(date +%s.%N)
{
    echo "# Clean run of 'snakemake --cores 4 --resources gpu=1' on the default config"
    echo "# $(date -u +%Y-%m-%d) | $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) | load average $(cut -d' ' -f1 /proc/loadavg) | torch $(python -c 'import torch; print(torch.__version__)') | CUDA: $(python -c 'import torch; print(torch.cuda.is_available())')"
    python -c "print(f'wall time: {$finished - $started:.1f} s\n')"
    python bench/summarize_benchmarks.py benchmarks
} | tee "$output"
python bench/overhead.py . | tee bench/results/overhead.txt
