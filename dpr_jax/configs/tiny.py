"""A tiny random BERT for tests and smoke runs (seconds per run on a CPU).

  python train.py --config configs/tiny.py --workdir runs/tiny \\
      --config.data.train_files=train.jsonl --config.data.dev_file=dev.jsonl
"""
from dpr_jax.configs import base


def get_config():
  c = base.get_config()
  c.model.init = "random"
  c.model.bert.vocab_size = 30522      # MiniLM's uncased WordPiece tokenizer
  c.model.bert.hidden_size = 32
  c.model.bert.num_hidden_layers = 2
  c.model.bert.num_attention_heads = 2
  c.model.bert.intermediate_size = 64
  c.model.bert.max_position_embeddings = 64
  c.model.projection_dim = 16
  c.data.num_hard_negatives = 1
  c.data.question_max_length = 16
  c.data.passage_max_length = 32
  c.train.global_batch = 16
  c.train.epochs = 2
  c.train.log_every = 1
  c.train.save_every = 3
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 2
  c.eval.at_start = False
  c.eval.max_batches = 2
  c.eval.batch_size = 16
  return c
