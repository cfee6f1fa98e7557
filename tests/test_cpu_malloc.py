"""cpu_malloc: when it re-executes, and that the re-executed command is the same. What the
settings do to page faults is measured by bench/cpu_malloc_faults.py."""
import json
import os
import platform
import subprocess
import sys

import pytest

from dpr_jax import cpu_malloc

glibc_linux = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc only")


def clean_env(**extra):
  env = {k: v for k, v in os.environ.items()
         if k not in cpu_malloc.SETTINGS and k not in ("DPR_JAX_MALLOC", "JAX_PLATFORMS")}
  return {**env, **extra}


@glibc_linux
def test_wanted_only_when_asked_and_once():
  assert cpu_malloc.wanted(clean_env(DPR_JAX_MALLOC="1"))
  assert not cpu_malloc.wanted(clean_env())
  assert not cpu_malloc.wanted(clean_env(DPR_JAX_MALLOC="0"))
  # Already set (the re-executed process, or the user's own choice): leave it.
  assert not cpu_malloc.wanted(clean_env(DPR_JAX_MALLOC="1", MALLOC_ARENA_MAX="4"))
  assert not cpu_malloc.wanted(clean_env(DPR_JAX_MALLOC="1", **cpu_malloc.SETTINGS))
  assert cpu_malloc.setting(clean_env(**cpu_malloc.SETTINGS)) == "tuned"
  assert cpu_malloc.setting(clean_env()) == "default"


SCRIPT = """
import json, os, sys
from dpr_jax import cpu_malloc
if __name__ == "__main__":
  print("started", flush=True)
  cpu_malloc.ensure()
  env = {k: os.environ.get(k) for k in cpu_malloc.SETTINGS}
  print(json.dumps({"argv": sys.argv[1:], "env": env, "stdin": sys.stdin.read()}))
"""


@pytest.mark.slow
@glibc_linux
@pytest.mark.parametrize("as_module", [False, True])
def test_reexecutes_same_command_once(tmp_path, as_module):
  (tmp_path / "reexec_probe.py").write_text(SCRIPT)
  target = ["-m", "reexec_probe"] if as_module else [str(tmp_path / "reexec_probe.py")]
  args = ["--flag", "a b", "--x=1"]
  env = clean_env(DPR_JAX_MALLOC="1", PYTHONPATH=os.pathsep.join(
      [str(tmp_path), os.environ.get("PYTHONPATH", "")]))
  out = subprocess.run([sys.executable, *target, *args], env=env, cwd=tmp_path, input="typed",
                       capture_output=True, text=True, check=True).stdout.splitlines()
  # The first process prints "started", then is replaced; the second prints it again and runs.
  assert out[:2] == ["started", "started"] and len(out) == 3
  got = json.loads(out[2])
  assert got["argv"] == args and got["stdin"] == "typed"
  assert got["env"] == cpu_malloc.SETTINGS
  # Not asked for: runs once, untouched.
  out = subprocess.run([sys.executable, *target, *args], env={**env, "DPR_JAX_MALLOC": "0"},
                       cwd=tmp_path, input="", capture_output=True, text=True,
                       check=True).stdout.splitlines()
  assert out[0] == "started" and json.loads(out[1])["env"] == {k: None for k in cpu_malloc.SETTINGS}
