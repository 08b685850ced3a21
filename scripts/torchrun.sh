#!/usr/bin/env bash
# DDP training launched by torchrun: workstations, cloud VMs, Kubernetes - machines without
# SLURM (on SLURM use scripts/slurm/train.sbatch, which also requeues on the time limit).
#
# torchrun starts NPROC_PER_NODE processes on each node and gives each one RANK, LOCAL_RANK,
# WORLD_SIZE, MASTER_ADDR and MASTER_PORT; Lightning detects them (TorchElasticEnvironment) and
# launches nothing itself. trainer.devices and trainer.num_nodes must match torchrun's counts,
# so this script passes the same numbers to both.
#
#   scripts/torchrun.sh                                    # one node, every visible GPU
#   NPROC_PER_NODE=2 scripts/torchrun.sh --trainer.max_epochs 5
#   TRAINER_CONFIG=configs/trainer/ddp_cpu.yaml NPROC_PER_NODE=2 scripts/torchrun.sh   # CPU (gloo)
#   # two nodes: run on both, with node 0's address; data/ and runs/ on a shared filesystem
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.1.2.3 scripts/torchrun.sh
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.1.2.3 scripts/torchrun.sh
#
# Arguments are appended to `lemon-pl fit` and win over what precedes them.
# Environment (all optional):
#   NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), MASTER_PORT (29500)
#   NPROC_PER_NODE   processes (= GPUs) per node; default: the GPUs nvidia-smi lists
#   TRAINER_CONFIG   hardware overlay (default configs/trainer/ddp.yaml)
#   DATA_ROOT, DATA_PRESET  data to generate and train on (default data/default, default)
#   GENERATE=0       skip generating missing data (node 0 generates it before the launch, so
#                    that several processes never write the same files)
#   CKPT             checkpoint to resume from (e.g. runs/pretrain/version_0/checkpoints/last.ckpt)
#   WANDB_API_KEY, WANDB_MODE  for --config configs/logger/wandb.yaml (never write keys into files)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."          # the repository root: configs/ is relative

NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
TRAINER_CONFIG=${TRAINER_CONFIG:-configs/trainer/ddp.yaml}
DATA_ROOT=${DATA_ROOT:-data/default}
DATA_PRESET=${DATA_PRESET:-default}
if [[ -z ${NPROC_PER_NODE:-} ]]; then
  if ! command -v nvidia-smi > /dev/null; then
    echo "error: no nvidia-smi; set NPROC_PER_NODE (and TRAINER_CONFIG for CPU)" >&2
    exit 1
  fi
  NPROC_PER_NODE=$(nvidia-smi --list-gpus | grep -c '^GPU')
fi

if [[ ${GENERATE:-1} == 1 && $NODE_RANK == 0 ]]; then
  lemon-pl generate --root "$DATA_ROOT" --preset "$DATA_PRESET" --workers "$(nproc)" --no-progress
fi

resume=()
if [[ -n ${CKPT:-} ]]; then
  resume=(--ckpt_path "$CKPT")
fi

exec torchrun \
  --nnodes="$NNODES" \
  --nproc-per-node="$NPROC_PER_NODE" \
  --node-rank="$NODE_RANK" \
  --master-addr="$MASTER_ADDR" \
  --master-port="$MASTER_PORT" \
  -m lemon_pl fit \
    --config configs/pretrain.yaml \
    --config "$TRAINER_CONFIG" \
    --trainer.num_nodes "$NNODES" \
    --trainer.devices "$NPROC_PER_NODE" \
    --data.init_args.root "$DATA_ROOT" \
    --data.init_args.preset "$DATA_PRESET" \
    --data.init_args.generate false \
    ${resume[@]+"${resume[@]}"} \
    "$@"
