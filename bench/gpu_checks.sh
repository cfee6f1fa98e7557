#!/bin/bash
# GPU checks of the training step and encoding, one script for one GPU (H100/H200; about 10
# minutes at most, each section under a timeout). Results: JSON lines in $OUT/gpu.jsonl
# (or ./gpu.jsonl); the log on stdout.
#   1. cuDNN attention vs XLA attention on a padded bf16 batch (tests/test_model.py -k gpu)
#   2. bert-base dual-encoder training step, bf16, global batch 128 (q 32 / p 256 tokens, 1 hard
#      negative), DPR's dropout 0.1: ours vs transformers' PyTorch BERT; MFU on model FLOPs only
#   3. a profile of that step (bench/xla_profile.py: device kernel time per HLO op and category)
#   4. real lengths, DPR's NQ recipe (max 256/256, 1 hard negative, dropout 0.1), bert-base bf16,
#      batch 128: SQuAD questions with SQuAD paragraphs, then with DPR-style 100-word passages
#      (lengths from bench/squad_token_lengths.json, so neither data nor tokenizer is needed):
#      ours bucketed | PyTorch padded to 256 (DPR-style) | PyTorch with the same buckets
#   5. bert-base passage encoding, bf16, batch 512 x 256 tokens: ours vs PyTorch
#   6. (MEMORY=1 only) the largest global batch that trains, without and with gradient caching
# Runs on the machine's own jax/flax/torch.
set -u
OUT=${OUT:-.}
LOG=$OUT/gpu.jsonl
export PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD
export XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv
python3 -c "import jax, flax, optax, transformers, torch; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__, jax.devices())" || exit 1
T0=$(date +%s)
section() { echo "=== $1 at $(( $(date +%s) - T0 )) s"; }

section attention
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_model.py -k gpu 2>&1 | tail -3

TB="python3 bench/train_throughput.py --arch bert-base --dtype bfloat16"
section train-dropout
timeout 110 $TB --mode train --batch 128 --steps 5 --rounds 2 --tag dpr-dropout | tee -a $LOG

section profile
timeout 120 python3 bench/xla_profile.py --arch bert-base --dtype bfloat16 --batch 128 \
    --q_len 32 --p_len 256 --warmup 3 --steps 3 --top 30 | tee -a $LOG

for SRC in squad w100; do
  section real-lengths-$SRC
  timeout 130 $TB --mode train --batch 128 --q_len 256 --p_len 256 --lengths $SRC \
      --lengths_file bench/squad_token_lengths.json --n_batches 2 --warmup 1 --steps 2 \
      --rounds 2 --tag real-$SRC | tee -a $LOG
done

section encode
timeout 70 $TB --mode encode --batch 512 --attn_dropout 0 --steps 5 --rounds 2 | tee -a $LOG

if [ "${MEMORY:-0}" = 1 ]; then
  GM="python3 bench/grad_cache_memory.py --arch bert-base --dtype bfloat16 --p_len 256 --run"
  export XLA_PYTHON_CLIENT_MEM_FRACTION=0.95
  section max-batch-direct
  timeout 150 $GM --batches 512,1024 --chunks 0 --stop_after_oom | tee -a $LOG
  section max-batch-cached
  timeout 150 $GM --batches 2048,8192 --chunks 128 --stop_after_oom --time_budget_s 100 | tee -a $LOG
fi
section done
