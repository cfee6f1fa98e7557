"""DPR's Natural Questions recipe (Karpukhin et al. 2020, single NQ retriever) for bert-base.

  python train.py --config configs/nq.py --workdir runs/nq \\
      --config.data.train_files=biencoder-nq-train.json --config.data.dev_file=biencoder-nq-dev.json

Data: DPR's `biencoder-nq-train.json` / `biencoder-nq-dev.json`, from overrides
(`--config.data.train_files=...`) or the environment variables DPR_NQ_TRAIN / DPR_NQ_DEV.
"""
import os

from configs import base


def get_config():
  c = base.get_config()
  c.model.init = "bert-base-uncased"
  c.data.train_files = os.environ.get("DPR_NQ_TRAIN", "")
  c.data.dev_file = os.environ.get("DPR_NQ_DEV", "")
  c.data.num_hard_negatives = 1
  c.data.question_max_length = 256
  c.data.passage_max_length = 256
  c.train.global_batch = 128
  c.train.epochs = 40
  c.optim.lr = 2e-5
  c.optim.warmup_steps = 1237
  c.optim.clip_norm = 2.0
  c.eval.max_questions = 2000
  return c
