"""CPU-scale recipe: fine-tune the packaged all-MiniLM-L6-v2 on the prepared SQuAD data.

  python -m dpr_jax.recipe --config configs/squad.py --workdir runs/squad   # both DPR rounds
  python train.py --config configs/squad.py --workdir runs/squad/round1     # round 1 alone

Round 1 trains with BM25 hard negatives; `python -m dpr_jax.recipe` then encodes the corpus,
mines the round-1 model's own hard negatives and trains round 2 from round 1's best checkpoint
(the `recipe` section; docs/recipe.md gives the measured times and accuracies).

MiniLM was trained with mean pooling, tied encoders and a scaled cosine (scale 20 = temperature
0.05), so we keep those. Training files are prepared into <workdir>/data when absent, from the
SQuAD folder `data.prepare_args.squad_dir` (`paragraphs.tsv.gz`, `train.qas.jsonl.gz`; empty:
$DPR_DATA_DIR/squad, ../shared/data/squad or ./data/squad). Build that folder from the official
files with `python -m dpr_jax.prepare squad --train_json train-v1.1.json --dev_json
dev-v1.1.json --out data/squad` (see docs/data.md).
"""
import ml_collections

from dpr_jax.configs import base


def get_config():
  c = base.get_config()
  c.model.init = "minilm"
  c.model.pooling = "mean"
  c.model.tied = True
  c.data.prepare = "squad"
  c.data.prepare_args.squad_dir = ""   # the SQuAD folder (empty: see above)
  c.data.prepare_args.val_splits = 2   # two disjoint held-out article sets: dev, dev2
  c.data.num_hard_negatives = 1
  c.data.question_max_length = 32
  c.data.passage_max_length = 160
  c.train.global_batch = 32
  c.train.epochs = 1
  c.train.max_steps = 160
  c.train.save_every = 40
  c.train.log_every = 10
  c.optim.lr = 3e-5
  c.optim.warmup_steps = 24
  c.optim.weight_decay = 0.01
  c.loss.similarity = "cosine"
  c.loss.temperature = 0.05
  c.eval.every = 80
  c.eval.max_questions = 500
  c.eval.max_batches = 8
  # DPR's second round (`python -m dpr_jax.recipe`, docs/recipe.md); `train.py` ignores it.
  c.recipe = r = ml_collections.ConfigDict()
  r.encode_max_length = 256     # passage tokens when encoding the corpus (training reads 160)
  r.encode_batch_size = 32
  r.mine_questions = 6000       # training questions retrieved for mining
  r.mine_depth = 30             # ranks searched for negatives
  r.mined_negatives = 2         # round-1 negatives kept per question
  r.mix_bm25 = True             # and the question's BM25 negatives appended
  r.round2_steps = 160          # continuing from round 1's best checkpoint
  r.round2_lr = 2e-5
  r.round2_warmup_steps = 16
  r.round2_hard_negatives = 1   # per question per step, drawn from the mixed pool
  r.window_words = 100          # round 2 encodes 100-word windows (0: whole paragraphs)
  r.window_stride = 50          # a window every 50 words
  return c
