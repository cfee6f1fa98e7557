"""Demo: finishes in under 10 minutes on 2 CPU cores.

  python train.py --config configs/demo.py --workdir runs/demo

Prepares a small slice of SQuAD (3,000 training questions, 300 validation questions from held-out
articles) from the SQuAD folder of `configs/squad.py` (`data.prepare_args.squad_dir`),
fine-tunes the packaged MiniLM for 60 steps, and shows the validation average rank falling
from step 0.
"""
from dpr_jax.configs import squad


def get_config():
  c = squad.get_config()
  c.data.prepare_args.max_train_questions = 3000
  c.data.prepare_args.max_val_questions = 300
  c.data.prepare_args.num_hard_negatives = 1
  c.data.prepare_args.val_splits = 1
  c.data.question_max_length = 32
  c.data.passage_max_length = 128
  c.train.global_batch = 16
  c.train.max_steps = 60
  c.train.save_every = 30
  c.optim.lr = 5e-5
  c.optim.warmup_steps = 6
  c.eval.every = 30
  c.eval.max_questions = 300
  c.eval.max_batches = 4
  return c
