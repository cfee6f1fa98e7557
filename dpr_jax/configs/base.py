"""Defaults shared by every config; each config file starts from `base.get_config()`.

Runnable as is only with data and a model named by overrides, e.g.

  python train.py --config configs/base.py --workdir runs/base \\
      --config.data.train_files=biencoder-train.json --config.data.dev_file=biencoder-dev.json
"""
import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.model = m = ml_collections.ConfigDict()
  m.init = "bert-base-uncased"   # HF BERT/DPR dir or hub name, `minilm`, or `random`
  m.tokenizer = ""               # default: the init's tokenizer (MiniLM's for `random`)
  m.pooling = "cls"              # DPR: [CLS]; `mean` for sentence-embedding inits
  m.projection_dim = 0           # DPR's optional projection (0: none)
  m.tied = False                 # DPR trains separate question and passage encoders
  m.dtype = "float32"            # compute dtype (float32 / bfloat16); parameters stay fp32
  m.attention = "auto"           # auto / xla / cudnn: see dpr_jax.models.bert.ATTENTIONS
  m.remat = False                # recompute each layer in the backward pass
  m.bert = ml_collections.ConfigDict()  # BertConfig fields for init=random

  c.data = d = ml_collections.ConfigDict()
  d.train_files = ""             # comma-separated DPR training files (.json/.jsonl[.gz])
  d.train_weights = ""           # comma-separated sampling weights (default 1 each)
  d.dev_file = ""
  d.prepare = ""                 # `squad`: build the data with dpr_jax.tools.prepare if absent
  d.prepare_dir = ""             # default <workdir>/data
  d.prepare_args = ml_collections.ConfigDict()
  d.num_hard_negatives = 1
  d.keep_negatives = 8           # negatives kept in memory per question
  d.shuffle_positives = False
  d.question_max_length = 256
  d.passage_max_length = 256
  d.bucket_multiple = 32         # pad each batch to a multiple of this (per side); 0: to the max
  d.question_groups = 1          # >1: examples sorted by question length, questions encoded in
                                 # this many groups, each padded to its own bucket
  d.question_bucket_multiple = 0  # the question groups' bucket multiple (0: bucket_multiple)
  d.max_train_examples = 0       # 0: all

  c.train = t = ml_collections.ConfigDict()
  t.global_batch = 128
  t.epochs = 40
  t.max_steps = 0                # 0: epochs * steps_per_epoch
  t.seed = 12345
  t.log_every = 10               # 0: log at validation / save steps only
  t.save_every = 1000            # 0: save at the end of each epoch and of the run only
  t.keep_checkpoints = 3
  t.fsdp = 1                     # parameter-sharding mesh axis size
  t.grad_cache_chunk = 0         # >0: gradient caching, this many questions per device per pass
  t.allow_config_change = False  # resume a workdir whose recorded model/data/loss/train/optim
                                 # config differs (the new config is recorded for the next run)

  c.optim = o = ml_collections.ConfigDict()
  o.lr = 2e-5
  o.warmup_steps = 1237
  o.weight_decay = 0.0
  o.clip_norm = 2.0
  o.b1, o.b2, o.eps = 0.9, 0.999, 1e-8

  c.loss = l = ml_collections.ConfigDict()
  l.similarity = "dot"           # DPR: dot; `cosine` divides by `temperature`
  l.temperature = 1.0

  c.eval = e = ml_collections.ConfigDict()
  e.every = 0                    # steps between validations (0: end of each epoch only)
  e.at_start = True
  e.max_batches = 20             # dev batches for the in-batch NLL
  e.max_questions = 0            # dev questions for the average rank (0: all)
  e.batch_size = 64
  return c
