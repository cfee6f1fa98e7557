"""DPR's NQ reader recipe (Karpukhin et al. 2020, and DPR's `train_reader` defaults):
bert-base-uncased, 16 questions per batch, 1 positive + 23 negatives from the retriever's top
100, 350 tokens, lr 1e-5, no warm-up; 50 passages read per question at prediction; best
checkpoint by validation EM.

Training / dev results: retrieval results JSON (`python -m dpr_jax.retrieve`) over the NQ train
and dev questions, from `DPR_NQ_READER_TRAIN` / `DPR_NQ_READER_DEV` or overrides.
"""
import os

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.model = m = ml_collections.ConfigDict()
  m.init = "bert-base-uncased"   # HF BERT dir or hub name, `minilm`, or `random`
  m.tokenizer = ""
  m.dtype = "float32"
  m.remat = False
  m.bert = ml_collections.ConfigDict()

  c.data = d = ml_collections.ConfigDict()
  d.train_results = os.environ.get("DPR_NQ_READER_TRAIN", "")
  d.dev_results = os.environ.get("DPR_NQ_READER_DEV", "")
  d.passages = ""                # corpus TSV, for results written with --no_text
  d.top = 100                    # retrieved passages considered per training question
  d.passages_per_question = 24   # 1 positive + 23 negatives
  d.max_length = 350
  d.question_max_length = 64
  d.bucket_multiple = 32         # pad each batch to a multiple of this; 0: to max_length
  d.max_train_questions = 0

  c.train = t = ml_collections.ConfigDict()
  t.batch_questions = 16
  t.max_steps = 30000
  t.seed = 12345
  t.log_every = 50
  t.save_every = 2000
  t.keep_checkpoints = 3

  c.optim = o = ml_collections.ConfigDict()
  o.lr = 1e-5
  o.warmup_steps = 0
  o.weight_decay = 0.0
  o.clip_norm = 2.0

  c.eval = e = ml_collections.ConfigDict()
  e.every = 2000
  e.at_start = False
  e.top_k = 50
  e.max_answer_length = 10
  e.max_questions = 0
  e.batch_questions = 8
  return c
