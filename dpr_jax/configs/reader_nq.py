"""DPR's NQ reader recipe (Karpukhin et al. 2020, and DPR's `train_reader` defaults):
bert-base-uncased, 16 questions per batch, 1 positive + 23 negatives from the retriever's top
100, 350 tokens, lr 1e-5, no warm-up; 50 passages read per question at prediction; best
checkpoint by validation EM.

  python -m dpr_jax.reader_train --config configs/reader_nq.py --workdir runs/reader_nq \\
      --config.data.train_results=runs/nq/train_results.json \\
      --config.data.dev_results=runs/nq/dev_results.json

Training / dev results: retrieval results JSON (`python -m dpr_jax.retrieve`) over the NQ train
and dev questions. Starts from `base` (model, train and optim fields shared with the retriever);
the retriever-only fields are removed.
"""
import ml_collections

from dpr_jax.configs import base


def get_config():
  c = base.get_config()
  m = c.model
  m.init = "bert-base-uncased"   # HF BERT dir or hub name, `minilm`, or `random`
  for k in ("pooling", "projection_dim", "tied"):
    del m[k]
  del c.loss

  c.data = d = ml_collections.ConfigDict()
  d.train_files = ""             # DPR training files: gold positives + hard negatives
  d.train_results = ""           # and/or retrieval results on the training questions
  d.dev_results = ""             # retrieval results on the validation questions (end to end)
  d.dev_file = ""                # else a DPR file: validation on its gold paragraphs
  d.prepare = ""                 # `squad`: build train/dev files with dpr_jax.tools.prepare
  d.prepare_dir = ""             # default <workdir>/data
  d.prepare_args = ml_collections.ConfigDict()
  d.keep_negatives = 8           # negatives kept in memory per question (DPR files)
  d.passages = ""                # corpus TSV, for results written with --no_text
  d.top = 100                    # retrieved passages considered per training question
  d.passages_per_question = 24   # 1 positive + 23 negatives
  d.max_length = 350
  d.question_max_length = 64
  d.bucket_multiple = 32         # pad each batch to a multiple of this; 0: to max_length
  d.max_train_questions = 0

  t = c.train
  for k in ("global_batch", "epochs", "grad_cache_chunk"):
    del t[k]
  t.batch_questions = 16         # questions per global batch (a multiple of the device count)
  t.max_steps = 30000
  t.log_every = 50
  t.save_every = 2000

  o = c.optim
  o.lr = 1e-5
  o.warmup_steps = 0
  o.weight_decay = 0.0
  o.clip_norm = 2.0

  c.eval = e = ml_collections.ConfigDict()
  e.every = 2000                 # steps between validations (0: at the end only)
  e.at_start = False
  e.top_k = 50
  e.max_answer_length = 10
  e.max_questions = 0
  e.batch_questions = 8
  return c
