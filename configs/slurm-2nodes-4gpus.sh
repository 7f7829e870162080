#!/bin/bash
# SimCLR pretraining of ResNet-18 on 2 nodes × 4 GPUs: 8 ranks, one per GPU, over MPI.
# Build selfsup with `cargo install --path . --features mpi` against the cluster's MPI, then:
#   sbatch configs/slurm-2nodes-4gpus.sh
# The data folder must be readable at the same path on every node (each rank reads its own
# images); the run folder is written by rank 0 only.
#SBATCH --job-name=selfsup-r18
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --open-mode=append
# USR1 to every rank 120 s before the time limit: they stop at one step with a checkpoint.
#SBATCH --signal=USR1@120
#SBATCH --output=selfsup-%j.log

DATA=${DATA:-$HOME/data/imagenet/train}
RUN=${RUN:-runs/r18-$SLURM_JOB_NAME}

# Each rank uses its cores for decoding and augmentation.
export RAYON_NUM_THREADS=$SLURM_CPUS_PER_TASK
# A rank that waits longer than this in a collective ends itself (a peer hung or died).
export SELFSUP_COLLECTIVE_TIMEOUT=1800

# The same command every time: --resume=auto starts the run, and a requeued job continues it
# from the last checkpoint (the configuration must stay the same; a change is refused).
# --kill-on-bad-exit ends every rank as soon as one fails; rank r on a node takes GPU r
# (SLURM_LOCALID). With Open MPI, `mpirun selfsup …` inside the allocation works as well.
STATUS=0
srun --kill-on-bad-exit=1 selfsup pretrain --backend wgpu --data "$DATA" --out "$RUN" \
  --config configs/cifar10-resnet18.toml --set train.batch_size=1024 \
  --set train.checkpoint_every_minutes=15 --resume=auto || STATUS=$?
# 75: stopped by the signal with a checkpoint on disk.
if [ "$STATUS" -eq 75 ]; then
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$STATUS"
