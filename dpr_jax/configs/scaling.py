"""The CPU-scale batch-size study (`python -m dpr_jax.scaling --config configs/scaling.py`).

The demo's recipe (MiniLM, SQuAD, 32/128 tokens, 1 BM25 hard negative) with a larger validation
pool (1,000 held-out questions and their passages) so that top-20 still separates the runs.
`dpr_jax.tools.scaling` sets the batch size, steps and warm-up per run.
"""
from dpr_jax.configs import demo


def get_config():
  c = demo.get_config()
  c.data.prepare_args.max_val_questions = 1000
  c.eval.max_questions = 1000
  return c
