"""The README stays true to the tree and to CI."""
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
  readme = (REPO / "README.md").read_text()
  ci = (REPO / ".ci" / "run").read_text()
  cmd = "python -m pytest -q -p no:cacheprovider tests"
  assert f"XLA_FLAGS=--xla_force_host_platform_device_count=8 {cmd}" in readme
  assert "export XLA_FLAGS=--xla_force_host_platform_device_count=8" in ci
  assert ci.strip().splitlines()[-1] == cmd


def test_module_map_matches_the_tree():
  readme = (REPO / "README.md").read_text()
  listed = set(re.findall(r"`dpr_jax/(\w+)\.py`", readme))
  present = {p.stem for p in (REPO / "dpr_jax").glob("*.py") if p.stem != "__init__"}
  assert listed == present


def test_package_imports_from_anywhere(tmp_path):
  p = subprocess.run([sys.executable, "-c", "import dpr_jax; print(dpr_jax.__version__)"],
                     cwd=tmp_path, capture_output=True, text=True)
  assert p.returncode == 0, p.stderr
