"""Test set-up: 8 virtual CPU devices and the repository on the import path, whatever folder
pytest is started from; fixtures for the packaged MiniLM (tests that need it skip, saying why,
when it is absent) and the SQuAD data: the shared folder, else the embedded demo slice."""
import os
import sys
from pathlib import Path

# Before jax is imported anywhere: the device count is fixed when its backend starts. A count the
# caller chose is kept.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_force_host_platform_device_count=8").strip()
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))
# libtpu (for the compile tests) on a host with no TPU: no TPU backend in this process or its
# subprocesses, as the commands do (dpr_jax.platforms).
from dpr_jax import platforms  # noqa: E402

platforms.skip_tpu_without_hardware()
# Subprocesses (train.py, python -m dpr_jax.*) import the checkout too.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

import pytest  # noqa: E402

from dpr_jax.data import resources  # noqa: E402


@pytest.fixture(scope="session")
def minilm_path():
  try:
    return resources.minilm_path()
  except ImportError as e:
    pytest.skip(str(e))


@pytest.fixture(scope="session")
def squad_dir(tmp_path_factory):
  """A built SQuAD folder (`paragraphs.tsv.gz`, `train.qas.jsonl.gz`, `train-v1.1.json.gz`):
  `resources.squad_dir()` when there is one, else the embedded demo slice built into a
  temporary folder by `prepare squad`'s own corpus step."""
  try:
    return resources.squad_dir()
  except FileNotFoundError:
    pass
  import shutil
  from dpr_jax.tools.prepare import build_squad_corpus
  d = tmp_path_factory.mktemp("data") / "squad"
  shutil.copy(resources.slice_json(), d.parent / "train-v1.1.json.gz")
  build_squad_corpus(d, d.parent / "train-v1.1.json.gz")
  shutil.move(d.parent / "train-v1.1.json.gz", d / "train-v1.1.json.gz")
  return d


@pytest.fixture(scope="session")
def serve_slice(squad_dir, tmp_path_factory):
  """The service tests' data: the first 300 SQuAD paragraphs (`psgs.tsv`) and 50 training
  questions whose gold paragraphs are among them (`qs.jsonl`, every 8th of the first 400)."""
  import gzip
  import json
  from dpr_jax.data.corpus import read_corpus
  d = tmp_path_factory.mktemp("serve_slice")
  corpus = read_corpus(squad_dir / "paragraphs.tsv.gz", limit=300)
  with open(d / "psgs.tsv", "w") as f:
    f.write("id\ttext\ttitle\n")
    f.writelines(f"{p}\t{x}\t{t}\n" for p, x, t in zip(corpus.ids, corpus.texts, corpus.titles))
  ids, qs = set(corpus.ids), []
  with gzip.open(squad_dir / "train.qas.jsonl.gz", "rt") as f:
    for line in f:
      q = json.loads(line)
      if set(q["positive_pids"]) <= ids and len(qs) < 400:
        qs.append(q)
  with open(d / "qs.jsonl", "w") as f:
    f.writelines(json.dumps(q) + "\n" for q in qs[::8][:50])
  return d
