#!/usr/bin/env bash
# Stops the daemons that .ci/slurm-up.sh started (by the process ids it recorded) and removes the
# configuration it wrote. Safe to run when nothing is running.
set -euo pipefail

STATE_DIR=/run/prunequant-slurm

# Reverse start order: slurmd and slurmctld still talk to munged while they shut down.
for name in slurmd slurmctld munged; do
    pid_file=$STATE_DIR/$name.pid
    [ -f "$pid_file" ] || continue
    pid=$(cat "$pid_file")
    # Each daemon leads its own session (setsid): signal the group, so the process that
    # runuser started for munged goes too.
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file"
done

# The configuration .ci/slurm-up.sh wrote goes too (it writes it afresh each time): with it left
# behind and no controller answering, every SLURM client call retries for about 10 s, and the
# SLURM executor plugin makes one (`scontrol show config`) whenever Snakemake starts.
rm -f /etc/slurm/slurm.conf /etc/slurm/gres.conf

