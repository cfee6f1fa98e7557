import os

import pytest

from dpr_jax.data import resources


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
