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
