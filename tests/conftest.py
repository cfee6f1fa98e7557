"""Test set-up: 8 virtual CPU devices and the repository on the import path, whatever folder
pytest is started from; fixtures for the packaged MiniLM and the shared SQuAD data (tests that
need them skip, saying why, when they are absent)."""
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
def squad_dir():
  try:
    return resources.squad_dir()
  except FileNotFoundError as e:
    pytest.skip(str(e))
