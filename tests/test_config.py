import subprocess
import sys
from pathlib import Path

from dpr_jax.config_lib import CONFIGS, resolve_config_arg

REPO = Path(__file__).resolve().parent.parent


def test_bare_config_name_is_found():
  assert resolve_config_arg(["x", "--config", "nq.py"]) == ["x", f"--config={CONFIGS}/nq.py"]
  assert resolve_config_arg(["--config=squad"]) == [f"--config={CONFIGS}/squad.py"]
  assert resolve_config_arg(["--config=configs/demo.py"])[0].endswith("configs/demo.py")


def test_configs_load_and_reject_typos():
  from ml_collections import config_flags  # noqa: F401
  import importlib
  sys.path.insert(0, str(REPO))
  for name in ("nq", "squad", "demo", "tiny"):
    c = importlib.import_module(f"configs.{name}").get_config()
    assert c.train.global_batch > 0
  nq = importlib.import_module("configs.nq").get_config()
  assert (nq.train.global_batch, nq.data.num_hard_negatives, nq.optim.lr, nq.optim.warmup_steps,
          nq.train.epochs, nq.data.passage_max_length, nq.optim.clip_norm) == (
              128, 1, 2e-5, 1237, 40, 256, 2.0)
  p = subprocess.run([sys.executable, str(REPO / "train.py"), "--config", "tiny.py",
                      "--workdir", "/tmp/x", "--config.optim.lrr=1"], capture_output=True,
                     text=True, cwd=REPO)
  assert p.returncode != 0 and "lrr" in p.stderr


def test_help_is_clear():
  p = subprocess.run([sys.executable, str(REPO / "train.py"), "--help"], capture_output=True,
                     text=True, cwd=REPO)
  # (absl exits 1 after printing --help)
  assert "--workdir" in p.stdout and "resumes" in p.stdout and "--config" in p.stdout
