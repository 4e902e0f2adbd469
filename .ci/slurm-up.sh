#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the workflow's SLURM test.
#
# Run as root on Debian 12 (CI). Safe to run again: packages are installed only when missing,
# and nothing is restarted while the node already answers as idle. The machine has no systemd,
# so munged, slurmctld and slurmd run in the background; their process ids go to $STATE_DIR
# for .ci/slurm-down.sh, their logs to /var/log/slurm/.
#
# The node offers one fake GPU backed by /dev/null, so a rule's `resources: gpu=1` becomes a real
# `sbatch --gpus=1` that SLURM accepts on a machine without GPUs (torch still sees no CUDA).
set -euo pipefail

STATE_DIR=/run/prunequant-slurm
LOG_DIR=/var/log/slurm
READY_TIMEOUT_S=${SLURM_READY_TIMEOUT_S:-60}
NODE=$(hostname -s)

fail() {
    echo "slurm-up: $*" >&2
    exit 1
}

node_state() {
    sinfo --noheader --nodes="$NODE" --format=%T 2>/dev/null | head -n 1
}

[ "$(id -u)" -eq 0 ] || fail "must run as root (it installs packages and starts daemons)"

# A node that runs jobs is up too: restarting would kill them.
if command -v sinfo >/dev/null; then
    case "$(node_state)" in
        idle | mixed | allocated | completing)
            echo "slurm-up: node $NODE is already up ($(node_state))"
            exit 0
            ;;
    esac
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
    echo "slurm-up: installing slurmctld slurmd slurm-client munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge </dev/null
fi

# Daemons left from an earlier start that never came up would hold the ports: stop them first.
"$(dirname "$0")/slurm-down.sh"

mkdir -p /etc/slurm "$STATE_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd /run/munge

cpus=$(nproc)
# Two job slots per core: a workflow job spends most of its life starting Python and Snakemake
# and waiting to be polled, so twice the slots finish a run sooner on a small machine. Jobs
# still get separate slots; nothing here measures speed.
slots=$((2 * cpus))
# SLURM refuses a node that reports less memory than configured: leave the system 15%.
memory_mb=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.85 }' /proc/meminfo)

cat >/etc/slurm/slurm.conf <<EOF
# Written by prunequant's .ci/slurm-up.sh: one node, no accounting database, no systemd.
ClusterName=prunequant
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Finished jobs stay visible to squeue and scontrol this long (30 min): the workflow polls with
# squeue (at least 3x its first status delay), and tests read how each job was submitted.
MinJobAge=1800
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$STATE_DIR/slurmctld.daemon.pid
SlurmdPidFile=$STATE_DIR/slurmd.daemon.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
GresTypes=gpu
# config_overrides: slurmd accepts the slot count above instead of the hardware's.
SlurmdParameters=config_overrides
NodeName=$NODE CPUs=$slots RealMemory=$memory_mb Gres=gpu:1 State=UNKNOWN
PartitionName=ci Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

# Without File= the node would be INVAL; /dev/null is a device file any job may open.
cat >/etc/slurm/gres.conf <<EOF
NodeName=$NODE Name=gpu File=/dev/null
EOF

if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key /run/munge
chmod 0400 /etc/munge/munge.key

# setsid + nohup: the daemons outlive this script and ignore the CI shell's hang-up.
start() {
    local name=$1
    shift
    setsid nohup "$@" >"$LOG_DIR/$name.out" 2>&1 </dev/null &
    echo $! >"$STATE_DIR/$name.pid"
}

start munged runuser -u munge -- munged -F
for _ in $(seq 50); do
    [ -S /run/munge/munge.socket.2 ] && break
    sleep 0.1
done
[ -S /run/munge/munge.socket.2 ] || fail "munged did not start; see $LOG_DIR/munged.out"

# -c: start from a clean state, so a drain reason from an earlier run cannot keep the node down.
start slurmctld slurmctld -D -c
start slurmd slurmd -D

deadline=$((SECONDS + READY_TIMEOUT_S))
until [ "$(node_state)" = "idle" ]; do
    if [ $SECONDS -ge $deadline ]; then
        echo "slurm-up: node $NODE not idle after ${READY_TIMEOUT_S}s (state: '$(node_state)')" >&2
        sinfo --long --Node >&2 || true
        tail -n 20 "$LOG_DIR"/*.log "$LOG_DIR"/*.out >&2 || true
        exit 1
    fi
    sleep 1
done
echo "slurm-up: node $NODE idle ($slots job slots on $cpus CPUs, ${memory_mb} MB, gres gpu:1 on /dev/null)"
