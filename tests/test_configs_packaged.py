"""Shipped configs are found through importlib.resources, so a `pip install .` has them."""
import os
import shutil
import subprocess
import tarfile
import sys
import tomllib
from pathlib import Path

import setuptools

from dpr_jax import config_lib

REPO = Path(__file__).resolve().parent.parent
# Moves the checkout's configs/ into the package and points their imports at it (the same, with
# `git mv`, turns a checkout into the packaged layout).
MOVE = ("mv configs dpr_jax/configs && sed -i 's/\\bfrom configs import/from dpr_jax.configs "
        "import/' dpr_jax/configs/*.py")


def test_resolver_takes_the_packaged_config_first(tmp_path, monkeypatch):
  pkg, checkout = tmp_path / "shipped_configs_fixture", tmp_path / "checkout_configs"
  for d in (pkg, checkout):
    d.mkdir()
    (d / "nq.py").write_text(f"# {d.name}\n")
  (pkg / "__init__.py").write_text("")
  (checkout / "tiny.py").write_text("")
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.setattr(config_lib, "PACKAGED_CONFIGS", "shipped_configs_fixture")
  monkeypatch.setattr(config_lib, "REPO_CONFIGS", checkout)
  monkeypatch.chdir(tmp_path)
  assert config_lib.resolve_path("nq.py:dir=/d") == (pkg / "nq.py", "dir=/d")
  assert config_lib.resolve_path("configs/nq") == (pkg / "nq.py", None)
  # Not in the package: the checkout's configs/.
  assert config_lib.find_config("tiny.py") == checkout / "tiny.py"
  assert config_lib.find_config("nope.py") is None
  absolute = str(checkout / "nq.py")
  assert config_lib.resolve_path(absolute) == (Path(absolute), None)
  # No such package: the checkout's configs/ alone.
  monkeypatch.setattr(config_lib, "PACKAGED_CONFIGS", "no_such_package_fixture")
  assert config_lib.find_config("nq.py") == checkout / "nq.py"


def _copy_checkout(dst: Path):
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
  for name in ("dpr_jax", "configs"):
    if (REPO / name).is_dir():
      shutil.copytree(REPO / name, dst / name, ignore=ignore)
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(REPO / name, dst)


def test_packaged_layout_ships_and_resolves_every_config(tmp_path):
  """On a copy of the checkout moved to the packaged layout: setuptools' package discovery (as
  pyproject.toml configures it) includes `dpr_jax.configs` with its `.py` files; installed
  with `pip install --target` (not editable), `--config NAME.py` resolves, from another folder,
  into the installed package and loads."""
  src = tmp_path / "src"
  _copy_checkout(src)
  if not (src / "dpr_jax" / "configs").is_dir():
    subprocess.run(MOVE, shell=True, check=True, cwd=src)
  names = sorted(p.name for p in (src / "dpr_jax" / "configs").glob("*.py"))
  tool = tomllib.loads((src / "pyproject.toml").read_text())["tool"]["setuptools"]
  found = setuptools.find_packages(str(src), include=tool["packages"]["find"]["include"])
  assert "dpr_jax.configs" in found and tool["package-data"]["dpr_jax.configs"] == ["*.py"]
  configs = [n for n in names if n != "__init__.py"]
  assert "nq.py" in configs and "base.py" in configs
  inst, elsewhere = tmp_path / "inst", tmp_path / "elsewhere"
  elsewhere.mkdir()
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                  "--no-build-isolation", "--target", str(inst), str(src)], check=True,
                 capture_output=True)
  shutil.rmtree(src)
  code = ("import sys, importlib.util; from dpr_jax import config_lib\n"
          "for n in sys.argv[1:]:\n"
          "  a = str(config_lib.resolve_path(n)[0])\n"
          "  spec = importlib.util.spec_from_file_location('c', a)\n"
          "  m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
          "  print(a, type(m.get_config()).__name__)\n")
  p = subprocess.run([sys.executable, "-c", code, *configs], cwd=elsewhere, text=True,
                     capture_output=True, env={"PYTHONPATH": str(inst), "PATH": "/usr/bin"})
  assert p.returncode == 0, p.stderr
  lines = p.stdout.splitlines()
  assert [l.split()[0] for l in lines] == [str(inst / "dpr_jax" / "configs" / n) for n in configs]
  assert all(l.split()[1] == "ConfigDict" for l in lines)
  # The embedded demo slice and its attribution are installed too, found the same way.
  p = subprocess.run([sys.executable, "-c", "from dpr_jax.data import resources; "
                      "print(resources.slice_json())"], cwd=elsewhere, text=True,
                     capture_output=True, env={"PYTHONPATH": str(inst), "PATH": "/usr/bin"})
  data = inst / "dpr_jax" / "demo_data"
  assert p.returncode == 0 and p.stdout.strip() == str(data / "squad-slice.json.gz"), p.stderr
  assert (data / "squad-slice.json.gz").stat().st_size > 1_000_000
  assert "CC BY-SA 4.0" in (data / "LICENSE").read_text()


def test_root_configs_is_the_packaged_folder(tmp_path, monkeypatch):
  """`configs/` at the top of a checkout is a link to `dpr_jax/configs` (git stores it as a
  link, mode 120000, once tracked); `--config configs/demo.py` reaches the packaged file from
  the checkout and from elsewhere; an sdist carries `configs/` with the same files."""
  link = REPO / "configs"
  assert link.is_symlink() and os.readlink(link) == "dpr_jax/configs"
  shipped = sorted(p.name for p in (REPO / "dpr_jax" / "configs").glob("*.py"))
  assert sorted(p.name for p in link.glob("*.py")) == shipped and "demo.py" in shipped
  git = subprocess.run(["git", "ls-files", "-s", "configs"], cwd=REPO, capture_output=True,
                       text=True)
  assert git.returncode != 0 or git.stdout.split()[:1] in ([], ["120000"])
  demo = (REPO / "dpr_jax" / "configs" / "demo.py").resolve()
  for cwd in (REPO, tmp_path):
    monkeypatch.chdir(cwd)
    assert config_lib.resolve_path("configs/demo.py")[0].resolve() == demo
  p = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                      "print(build_meta.build_sdist(sys.argv[1]))", str(tmp_path / "dist")],
                     cwd=REPO, capture_output=True, text=True)
  assert p.returncode == 0, p.stderr[-2000:]
  with tarfile.open(tmp_path / "dist" / p.stdout.split()[-1]) as tar:
    names = tar.getnames()
    top = names[0].split("/")[0]
    for name in shipped:
      member = tar.getmember(f"{top}/configs/{name}")
      got = tar.extractfile(member) if member.isfile() else None
      assert got is not None and got.read() == (REPO / "dpr_jax" / "configs" / name).read_bytes()
    assert f"{top}/dpr_jax/demo_data/squad-slice.json.gz" in names
