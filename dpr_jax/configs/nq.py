"""DPR's Natural Questions recipe (Karpukhin et al. 2020, single NQ retriever) for bert-base.

Data: DPR's `biencoder-nq-train.json.gz` / `biencoder-nq-dev.json.gz` in `./data/dpr` under the
working directory, where `python -m dpr_jax.download nq` puts them:

    python -m dpr_jax.download nq
    python train.py --config nq.py --workdir runs/nq

Elsewhere: `--config nq.py:dir=/data/dpr` (the folder holding both files), or
`--config nq.py:train=A.json.gz,dev=B.json.gz`, or the overrides `--config.data.train_files=...`
(comma-separated) and `--config.data.dev_file=...`. Paths are recorded absolute in config.json.
"""
from pathlib import Path

from dpr_jax.configs import base
from dpr_jax.data import download, resources


def data_paths(arg: str | None) -> tuple[str, str]:
  """(train file, dev file) from `dir=DIR`, `train=FILE`, `dev=FILE` (comma-separated)."""
  opts = {}
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    if not sep or key not in ("dir", "train", "dev"):
      raise ValueError(f"nq.py: expected dir=DIR, train=FILE or dev=FILE, got {item!r}")
    opts[key] = value
  folder = Path(opts.get("dir") or resources.dpr_download_dir()).expanduser()
  train = opts.get("train") or folder / download.CATALOG["nq-train"].filename
  dev = opts.get("dev") or folder / download.CATALOG["nq-dev"].filename
  return str(Path(train).expanduser().absolute()), str(Path(dev).expanduser().absolute())


def get_config(arg=None):
  c = base.get_config()
  c.model.init = "bert-base-uncased"
  c.data.train_files, c.data.dev_file = data_paths(arg)
  c.data.num_hard_negatives = 1
  c.data.question_max_length = 256
  c.data.passage_max_length = 256
  c.data.question_groups = 2           # short and long questions padded apart: the loss is
  c.data.question_bucket_multiple = 8  # that of the batch in length order padded to 256
  c.train.global_batch = 128
  c.train.epochs = 40
  c.optim.lr = 2e-5
  c.optim.warmup_steps = 1237
  c.optim.clip_norm = 2.0
  c.eval.max_questions = 2000
  return c
