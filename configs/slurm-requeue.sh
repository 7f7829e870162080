#!/bin/bash
# One process (CPU or one GPU) that survives preemption and time limits: Slurm sends USR1 to
# this script 120 s before the end, selfsup finishes its step, writes a checkpoint and exits
# with 75, and the script requeues the job; the requeued job runs the same command, and
# --resume=auto continues from the checkpoint (or starts the run, the first time).
#   sbatch configs/slurm-requeue.sh
#SBATCH --job-name=selfsup-convnet
#SBATCH --cpus-per-task=16
#SBATCH --time=4:00:00
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@120
#SBATCH --output=selfsup-%j.log

DATA=${DATA:-$HOME/data/cifar10/train}
RUN=${RUN:-runs/$SLURM_JOB_NAME}

# Checkpoints every 10 minutes as well, so that a node that dies without warning loses little.
selfsup pretrain --data "$DATA" --out "$RUN" --config configs/cifar10-convnet.toml \
  --set train.checkpoint_every_minutes=10 --resume=auto &
PID=$!
trap 'kill -USR1 "$PID"' USR1 TERM
wait "$PID"; STATUS=$?
# `wait` returns early (128 + the signal) when the trap runs: wait for selfsup itself.
while [ "$STATUS" -gt 128 ] && kill -0 "$PID" 2>/dev/null; do wait "$PID"; STATUS=$?; done
if [ "$STATUS" -eq 75 ]; then
  echo "selfsup stopped with a checkpoint: requeueing job $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$STATUS"
