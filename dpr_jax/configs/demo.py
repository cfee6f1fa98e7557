"""Demo: a few minutes on 2 CPU cores, on any machine.

  python train.py --config configs/demo.py --workdir runs/demo

Prepares a slice of SQuAD (3,000 training questions, 300 validation questions from 40 held-out
articles) from the SQuAD folder of `configs/squad.py` (`data.prepare_args.squad_dir`; empty:
$DPR_DATA_DIR/squad, ./data/squad, or the official files in ./data/squad-official). When there
is none, it reads the slice embedded in the package (`dpr_jax/demo_data/`, a few thousand
paragraphs and questions of SQuAD's training file, CC BY-SA 4.0) and says so in one log line.
Then fine-tunes the packaged MiniLM for 60 steps and ends with the validation top-1, top-5 and
average rank at step 0 and at the last step. The full recipe: `python -m dpr_jax.prepare squad
--download --out data/squad`, then `configs/squad.py` (docs/data.md).
"""
from dpr_jax.configs import squad


def get_config():
  c = squad.get_config()
  c.data.prepare_args.slice_fallback = True   # no SQuAD found: the embedded slice
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
