"""How commands are named and started: one table (`cli.TOOLS`), `python -m dpr_jax COMMAND`,
`python -m dpr_jax.COMMAND` (aliases with no code of their own) and the console scripts; a light
package top level, so that `import dpr_jax`, every `--help` and the `DPR_JAX_MALLOC=1`
re-execution happen before JAX is loaded."""
import ast
import json
import os
import platform
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from dpr_jax import cli

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("jax", "flax", "torch", "transformers", "faiss")


def _python(code: str, env=None):
  p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                     env={**os.environ, **(env or {})})
  assert p.returncode == 0, p.stderr[-3000:]
  return p.stdout


def test_import_dpr_jax_loads_no_jax_or_flax():
  out = json.loads(_python("import json, sys, dpr_jax; "
                           "print(json.dumps([m for m in %r if m in sys.modules]))" % (HEAVY,)))
  assert out == []
  import dpr_jax  # the lazy names still resolve
  from dpr_jax.models.bert import Bert
  assert dpr_jax.Bert is Bert and "Tokenizer" in dir(dpr_jax)


# For each command in turn, in one process: with DPR_JAX_MALLOC=1 the moment of the
# re-execution (recorded by a stand-in for os.execve), then `--help` through
# `python -m dpr_jax.NAME`; the heavy modules loaded by then.
PROBE = """
import contextlib, io, json, os, runpy, sys
heavy = %r
class ReExec(BaseException):
  pass
def execve(path, args, env):
  seen["at_reexec"] = [m for m in heavy if m in sys.modules]
  raise ReExec
os.execve = execve
report = {}
for name in sys.argv[1:]:
  seen = report[name] = {}
  os.environ["DPR_JAX_MALLOC"] = "1"
  sys.argv = ["x", "--help"]
  try:
    runpy.run_module("dpr_jax." + name, run_name="__main__", alter_sys=True)
  except ReExec:
    pass
  os.environ["DPR_JAX_MALLOC"] = "0"
  out = io.StringIO()
  try:
    with contextlib.redirect_stdout(out):
      runpy.run_module("dpr_jax." + name, run_name="__main__", alter_sys=True)
  except SystemExit as e:
    seen["status"] = e.code
  seen["help"] = out.getvalue()[:6]
  seen["after_help"] = [m for m in heavy if m in sys.modules]
print(json.dumps(report))
""" % (HEAVY,)
# `answer`'s module imports the reader's prediction code (JAX) at module level: its --help is
# left out until that module is light.
HEAVY_HELP = ["answer"]


def _probe(names):
  env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
  p = subprocess.run([sys.executable, "-c", PROBE, *names], cwd=REPO, capture_output=True,
                     text=True, env=env)
  assert p.returncode == 0, p.stderr[-3000:]
  return json.loads(p.stdout.strip().splitlines()[-1])


def _check(report):
  glibc = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"
  for name, seen in report.items():
    assert seen["status"] == 0 and seen["help"] == "usage:", name
    # Commands run in turn in one process: the first that loads a heavy module is named.
    assert seen["after_help"] == [], f"dpr_jax.{name} --help imports {seen['after_help']}"
    if glibc:
      assert seen["at_reexec"] == [], f"{name}: re-executed after {seen['at_reexec']}"


def test_help_and_malloc_reexec_come_before_jax():
  _check(_probe([n for n in cli.TOOLS if n not in HEAVY_HELP]))


def test_every_command_is_in_the_table_the_aliases_and_the_console_scripts():
  scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
  assert {f"dpr-{n.replace('_', '-')}": f"dpr_jax.cli:{n}" for n in cli.TOOLS} == scripts
  aliases = {p.stem for p in (REPO / "dpr_jax").glob("*.py")} - {
      "__init__", "__main__", "cli", "config_lib", "cpu_malloc", "platforms"}
  assert aliases == set(cli.TOOLS)
  for name, module in cli.TOOLS.items():
    assert callable(getattr(cli, name)) and (REPO / (module.replace(".", "/") + ".py")).is_file()
    # an alias holds no code: its docstring and one call naming its own command
    text = (REPO / "dpr_jax" / f"{name}.py").read_text()
    tree = ast.parse(text)
    assert [type(n).__name__ for n in tree.body] == ["Expr", "ImportFrom", "Assign"], name
    assert f'main = cli.alias(__name__, "{name}")' in text and f"`{module}`" in text


def test_python_m_dpr_jax_dispatches_by_name(tmp_path):
  results = tmp_path / "r.json"
  results.write_text(json.dumps([{"question": "q", "answers": ["paris"], "ctxs": [
      {"id": "1", "has_answer": False}, {"id": "2", "has_answer": True}]}]))
  p = subprocess.run([sys.executable, "-m", "dpr_jax", "evaluate", str(results), "--k", "1,2"],
                     cwd=REPO,
                     capture_output=True, text=True)
  assert p.returncode == 0, p.stderr[-2000:]
  assert json.loads((tmp_path / "r.metrics.json").read_text())["top1"] == 0.0
  assert json.loads((tmp_path / "r.metrics.json").read_text())["top2"] == 1.0
  p = subprocess.run([sys.executable, "-m", "dpr_jax", "--help"], cwd=REPO, capture_output=True,
                     text=True)
  assert p.returncode == 0 and all(f"  {n} " in p.stdout for n in cli.TOOLS)
  p = subprocess.run([sys.executable, "-m", "dpr_jax", "retreive"], cwd=REPO,
                     capture_output=True, text=True)
  assert p.returncode == 2 and p.stderr.startswith("error: python -m dpr_jax: expected a command")
  assert "'retreive'" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_an_alias_imported_gives_its_commands_main(capsys):
  from dpr_jax import evaluate
  with pytest.raises(SystemExit) as e:
    evaluate.main(["--help"])
  assert e.value.code == 0 and "python -m dpr_jax.evaluate" in capsys.readouterr().out
