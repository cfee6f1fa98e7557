import subprocess
import sys
from pathlib import Path

import pytest

from dpr_jax import config_lib
from dpr_jax.config_lib import CONFIGS, ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_bare_config_name_is_found():
  assert config_lib.resolve_path("nq.py") == (CONFIGS / "nq.py", None)
  assert config_lib.resolve_path("squad") == (CONFIGS / "squad.py", None)
  path, arg = config_lib.resolve_path("configs/demo.py:x")  # the root's configs/ is a link
  assert (path.resolve(), arg) == ((config_lib.CONFIGS / "demo.py").resolve(), "x")
  with pytest.raises(ConfigError, match="nope.py: expected a config file"):
    config_lib.resolve_path("nope.py")


def test_overrides_take_the_fields_type():
  c = config_lib.load("tiny", [("optim.lr", "1e-5"), ("train.global_batch", "32"),
                               ("eval.at_start", "true"), ("model.init", "minilm")])
  assert (c.optim.lr, c.train.global_batch, c.eval.at_start, c.model.init) == (
      1e-5, 32, True, "minilm")
  assert type(c.optim.lr) is float and type(c.train.global_batch) is int
  with pytest.raises(ConfigError, match=r"tiny.py: --config.optim.lrr: .*did you mean optim.lr"):
    config_lib.load("tiny", [("optim.lrr", "1")])
  with pytest.raises(ConfigError, match="train.global_batch: expected a value of type int"):
    config_lib.load("tiny", [("train.global_batch", "1.5")])
  with pytest.raises(AttributeError):  # locked: no new fields after loading
    c.optim.lrr = 1.0


@pytest.mark.parametrize("field,value", [("model.dtype", "float16"), ("model.pooling", "max"),
                                         ("loss.similarity", "l2"), ("train.log_every", "0"),
                                         ("train.global_batch", "-8"),
                                         ("eval.every", "-1")])
def test_enums_and_sizes_are_checked_at_load(field, value):
  with pytest.raises(ConfigError, match=field):
    config_lib.load("tiny", [(field, value)])


def test_split_overrides():
  rest, found = config_lib.split_overrides(["--config", "x", "--config.a.b=1", "--config.c", "2",
                                            "--workdir", "w"])
  assert rest == ["--config", "x", "--workdir", "w"] and found == [("a.b", "1"), ("c", "2")]


def test_shipped_configs_load():
  for name in ("nq", "squad", "demo", "tiny", "scaling", "reader_nq", "reader_squad"):
    c = config_lib.load(name)
    assert c.train.max_steps >= 0
  nq = config_lib.load("nq")
  assert (nq.train.global_batch, nq.data.num_hard_negatives, nq.optim.lr, nq.optim.warmup_steps,
          nq.train.epochs, nq.data.passage_max_length, nq.optim.clip_norm) == (
              128, 1, 2e-5, 1237, 40, 256, 2.0)


def test_train_py_rejects_typos_and_has_help():
  p = subprocess.run([sys.executable, str(REPO / "train.py"), "--config", "tiny.py",
                      "--workdir", "/tmp/x", "--config.optim.lrr=1"], capture_output=True,
                     text=True, cwd=REPO)
  assert p.returncode == 2 and p.stderr.strip().startswith("error:") and "lrr" in p.stderr
  p = subprocess.run([sys.executable, str(REPO / "train.py"), "--help"], capture_output=True,
                     text=True, cwd=REPO)
  assert p.returncode == 0
  assert "--workdir" in p.stdout and "resumes" in p.stdout and "--config" in p.stdout
