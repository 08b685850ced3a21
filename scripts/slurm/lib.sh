# shellcheck shell=bash
# Helpers shared by scripts/slurm/*.sbatch. Sourced, not executed:
#   source "$SLURM_SUBMIT_DIR/scripts/slurm/lib.sh"
# (sbatch runs a copy of the batch script from its spool folder, so the scripts find this file
# through the submit directory, which must be the repository root.)

# The number of GPUs per node the job was given: "4" or "a100:4" -> 4.
lemon_gpus_per_node() {
  local gpus=${SLURM_GPUS_PER_NODE:-}
  gpus=${gpus##*:}
  if [[ ! $gpus =~ ^[0-9]+$ ]]; then
    echo "error: submit with --gpus-per-node=N (SLURM_GPUS_PER_NODE is '${SLURM_GPUS_PER_NODE:-}')" >&2
    return 1
  fi
  printf '%s\n' "$gpus"
}

# Lightning starts no processes under SLURM: srun starts one task per GPU, and Lightning
# refuses to run when --ntasks-per-node differs from trainer.devices. Fail early and clearly.
lemon_check_tasks_per_node() {
  local gpus=$1 tasks=${SLURM_NTASKS_PER_NODE:-}
  if [[ $tasks != "$gpus" ]]; then
    echo "error: --ntasks-per-node (${tasks:-unset}) must equal --gpus-per-node ($gpus):" \
         "one DDP process per GPU" >&2
    return 1
  fi
}

# The checkpoint to resume from, printed (nothing for a fresh start):
#   1. the newest checkpoint this job wrote before it was requeued - Lightning's
#      hpc_ckpt_N.ckpt (saved on SIGUSR1 before the time limit) in HPC_DIR, or the run's
#      checkpoints/last.ckpt (after preemption or a node failure, Slurm requeues the job
#      without a signal); the run folder is RUNS_DIR/<name>/RUN_VERSION for any logger;
#   2. otherwise $CKPT, a checkpoint of an earlier job given at submission.
# Usage: lemon_resume_checkpoint HPC_DIR RUNS_DIR RUN_VERSION
lemon_resume_checkpoint() {
  local hpc_dir=$1 runs_dir=$2 version=$3 newest="" f
  for f in "$hpc_dir"/hpc_ckpt_*.ckpt "$runs_dir"/*/"$version"/checkpoints/last.ckpt; do
    [[ -f $f ]] || continue
    if [[ -z $newest || $f -nt $newest ]]; then
      newest=$f
    fi
  done
  if [[ -z $newest && -n ${CKPT:-} ]]; then
    newest=$CKPT
  fi
  printf '%s' "$newest"
}
