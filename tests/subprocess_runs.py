"""Helpers for tests that run training as CPU subprocesses (several devices, processes)."""
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cpu_env(devices: int, cache: Path) -> dict:
  """The environment of a CPU run with `devices` devices; runs with the same device count
  compile the same programs, so they share a compilation cache."""
  return {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5", "JAX_PLATFORMS": "cpu",
          "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def logged(workdir, key: str) -> dict:
  """{step: value} of `key` in `workdir/metrics.jsonl`."""
  lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
  return {m["step"]: m[key] for m in map(json.loads, lines) if key in m}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_two_processes(cmds, env, workdir, until_step: int, timeout: float):
  """Starts both commands; stops them once `until_step`'s loss is logged in `workdir` (CPU
  collectives between processes are slow), failing if either process failed."""
  procs = [subprocess.Popen(c, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True) for c in cmds]
  metrics, deadline = Path(workdir) / "metrics.jsonl", time.time() + timeout
  try:
    while time.time() < deadline and all(p.poll() is None for p in procs):
      if metrics.exists() and max(logged(workdir, "train/loss"), default=0) >= until_step:
        break
      time.sleep(0.2)
    for p in procs:
      assert p.poll() in (None, 0), p.stderr.read()[-3000:]
  finally:
    for p in procs:
      p.kill()
      p.wait()


def kill_after_checkpoint(cmd, env, checkpoint: Path, timeout: float):
  """Runs `cmd` and SIGKILLs it as soon as `checkpoint` is complete."""
  p = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
  deadline = time.time() + timeout
  while (not (checkpoint / "_CHECKPOINT_METADATA").exists() and p.poll() is None
         and time.time() < deadline):
    time.sleep(0.05)
  p.send_signal(signal.SIGKILL)
  p.wait()
  assert p.returncode == -signal.SIGKILL, "the run finished before it could be killed"
