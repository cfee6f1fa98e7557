#!/bin/bash
# The GPU checks of the performance and gradient-caching issues, as one script for one lent GPU
# (about 10 minutes on an H100/H200). Results: JSON lines in $OUT/gpu.jsonl (or ./gpu.jsonl).
#   1. cuDNN flash attention vs XLA attention on a padded bf16 batch (tests/test_model.py -k gpu)
#   2. bert-base dual-encoder training step, bf16, global batch 128 (q 32 / p 256 tokens, 1 hard
#      negative): ours vs transformers' PyTorch BERT, with DPR's attention dropout and without
#   3. bert-base passage encoding, bf16, batch 512 x 256 tokens: ours vs PyTorch
#   4. a profile of that training step (bench/xla_profile.py: kernel time per HLO op)
#   5. the largest global batch of bert-base (seq 256) that trains, without and with gradient
#      caching
# Runs on the machine's own jax/flax (seen: jax 0.11.2, flax 0.12.10; flax 0.12.8, our CPU pin,
# does not import under jax 0.11).
set -u
OUT=${OUT:-.}
LOG=$OUT/gpu.jsonl
export PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv
python3 -c "import jax, flax, optax, transformers, torch; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__, jax.devices())" || exit 1
T0=$(date +%s)
section() { echo "=== $1 at $(( $(date +%s) - T0 )) s"; }

section attention
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_model.py -k gpu 2>&1 | tail -3

TB="python3 bench/train_throughput.py --arch bert-base --dtype bfloat16 --steps 5 --rounds 2"
section train-dropout
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 120 $TB --mode train --batch 128 --tag dpr-dropout | tee -a $LOG
section train-fused
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 120 $TB --mode train --batch 128 --attn_dropout 0 --tag no-attn-dropout | tee -a $LOG
section encode
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 90 $TB --mode encode --batch 512 --attn_dropout 0 | tee -a $LOG

section profile
# Device kernel time per HLO op and per category (matmul, cuDNN attention, dropout RNG, ...).
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 150 python3 bench/xla_profile.py --arch bert-base \
    --dtype bfloat16 --batch 128 --q_len 32 --p_len 256 --warmup 3 --steps 3 --top 30 | tee -a $LOG

if [ "${SKIP_MEMORY:-0}" != 1 ]; then  # SKIP_MEMORY=1: measured on the H200 in session 2
  GM="python3 bench/grad_cache_memory.py --arch bert-base --dtype bfloat16 --p_len 256 --run"
  export XLA_PYTHON_CLIENT_MEM_FRACTION=0.95
  section max-batch-direct
  timeout 150 $GM --batches 512,1024 --chunks 0 --stop_after_oom | tee -a $LOG
  section max-batch-cached
  timeout 150 $GM --batches 2048,8192 --chunks 128 --stop_after_oom --time_budget_s 100 | tee -a $LOG
fi
section done
