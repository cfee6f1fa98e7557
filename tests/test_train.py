"""End-to-end train.py runs with a tiny random BERT: 1 vs 8 devices, 2 processes, SIGKILL and
resume, non-finite loss."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
WORDS = ("alpha beta gamma delta river mountain city king queen music war science history "
         "ocean planet energy law art church army ship bridge island forest").split()


def _text(rng, n):
  return " ".join(rng.choice(WORDS, n))


def write_dpr_file(path, n, seed, hard=2):
  rng = np.random.default_rng(seed)
  with open(path, "w") as f:
    for i in range(n):
      ctx = lambda: {"title": _text(rng, 2), "text": _text(rng, 20), "passage_id": str(rng.integers(1e9))}
      f.write(json.dumps({"question": _text(rng, 6) + "?", "answers": ["x"],
                          "positive_ctxs": [ctx()], "negative_ctxs": [],
                          "hard_negative_ctxs": [ctx() for _ in range(hard)]}) + "\n")
  return path


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
  d = tmp_path_factory.mktemp("data")
  return write_dpr_file(d / "train.jsonl", 96, 0), write_dpr_file(d / "dev.jsonl", 32, 1)


def _cmd(workdir, data, *extra):
  train, dev = data
  return [sys.executable, str(REPO / "train.py"), "--config", "tiny.py", "--workdir", str(workdir),
          f"--config.data.train_files={train}", f"--config.data.dev_file={dev}",
          "--config.train.max_steps=8", *extra]


CACHE = Path(os.environ.get("TMPDIR", "/tmp")) / f"dpr_jax_test_cache_{os.getpid()}"


def _env(devices):
  env = dict(os.environ)
  # Runs with the same device count compile the same programs: share them.
  env["JAX_COMPILATION_CACHE_DIR"] = str(CACHE)
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["JAX_PLATFORMS"] = "cpu"
  return env


def _losses(workdir):
  out = {}
  for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines():
    m = json.loads(line)
    if "train/loss" in m:
      out[m["step"]] = m["train/loss"]
  return out


def _run(cmd, env, timeout=300):
  p = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
  assert p.returncode == 0, p.stderr[-3000:]
  return p


@pytest.fixture(scope="module")
def eight_device_run(tiny_data, tmp_path_factory):
  wd = tmp_path_factory.mktemp("wd8")
  _run(_cmd(wd, tiny_data), _env(8))
  return wd


def test_metrics_and_checkpoints(eight_device_run):
  wd = eight_device_run
  lines = [json.loads(l) for l in (wd / "metrics.jsonl").read_text().splitlines()]
  train = [l for l in lines if "train/loss" in l]
  assert [l["step"] for l in train] == list(range(1, 9))
  for k in ("train/loss", "train/lr", "train/examples_per_s"):
    assert all(k in l for l in train)
  evals = [l for l in lines if "eval/avg_rank" in l]
  assert [l["step"] for l in evals] == [6, 8]  # end of epoch 1 (6 steps) and the end
  assert sorted(int(p.name) for p in (wd / "checkpoints").iterdir()) == [3, 6, 8]  # save_every=3, keep 3
  assert len(list((wd / "best").iterdir())) == 1
  assert json.loads((wd / "config.json").read_text())["train"]["max_steps"] == 8
  assert json.loads((wd / "model.json").read_text())["bert"]["hidden_size"] == 32


def test_one_device_gives_the_same_losses(eight_device_run, tiny_data, tmp_path):
  _run(_cmd(tmp_path, tiny_data), _env(1))
  a, b = _losses(eight_device_run), _losses(tmp_path)
  for s in range(1, 6):
    assert abs(a[s] - b[s]) <= 1e-4, (s, a[s], b[s])


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_give_the_same_losses(eight_device_run, tiny_data, tmp_path):
  """2 processes x 4 CPU devices (jax.distributed, gloo collectives on localhost). CPU
  collectives between processes are slow here (~5 s a step), so the run is stopped once the
  5 compared steps are logged."""
  port = _free_port()
  procs = [subprocess.Popen(
      _cmd(tmp_path, tiny_data, f"--coordinator=127.0.0.1:{port}", "--num_processes=2",
           f"--process_id={i}"), env=_env(4), cwd=REPO, stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE, text=True) for i in range(2)]
  metrics, deadline = tmp_path / "metrics.jsonl", time.time() + 300
  try:
    while time.time() < deadline and all(p.poll() is None for p in procs):
      if metrics.exists() and max(_losses(tmp_path), default=0) >= 5:
        break
      time.sleep(0.2)
    for p in procs:
      assert p.poll() in (None, 0), p.stderr.read()[-3000:]
  finally:
    for p in procs:
      p.kill()
      p.wait()
  a, b = _losses(eight_device_run), _losses(tmp_path)
  for s in range(1, 6):
    assert abs(a[s] - b[s]) <= 1e-4, (s, a[s], b[s])


def test_sigkill_then_resume_matches_uninterrupted_run(eight_device_run, tiny_data, tmp_path):
  cmd = _cmd(tmp_path, tiny_data)
  p = subprocess.Popen(cmd, env=_env(8), cwd=REPO, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
  ckpt = tmp_path / "checkpoints" / "3"
  deadline = time.time() + 240
  while not (ckpt / "_CHECKPOINT_METADATA").exists() and p.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  p.send_signal(signal.SIGKILL)
  p.wait()
  assert p.returncode == -signal.SIGKILL, "the run finished before it could be killed"
  killed_at = max(_losses(tmp_path))
  assert killed_at < 8
  _run(cmd, _env(8))
  a, b = _losses(eight_device_run), _losses(tmp_path)
  assert sorted(b) == list(range(1, 9))  # no step lost or logged twice
  for s in range(1, 9):
    assert abs(a[s] - b[s]) <= 1e-5, (s, a[s], b[s])


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_data, tmp_path):
  p = subprocess.run(_cmd(tmp_path, tiny_data, "--config.optim.lr=1e38",
                          "--config.optim.clip_norm=0", "--config.optim.warmup_steps=0"),
                     env=_env(1), cwd=REPO, capture_output=True, text=True, timeout=300)
  assert p.returncode != 0
  assert "non-finite training loss" in p.stderr
  assert "last good checkpoint" in p.stderr


def test_trained_workdir_loads_best_and_latest(eight_device_run):
  from dpr_jax.training.checkpoint import load_model
  lines = [json.loads(l) for l in (eight_device_run / "metrics.jsonl").read_text().splitlines()]
  ranks = {l["step"]: l["eval/avg_rank"] for l in lines if "eval/avg_rank" in l}
  best_step = min(ranks, key=lambda s: (ranks[s], -s))
  model, tok, desc = load_model(eight_device_run)
  assert desc["checkpoint_step"] in [s for s in ranks if ranks[s] == ranks[best_step]]
  _, _, latest = load_model(eight_device_run, which="latest")
  assert latest["checkpoint_step"] == 8
  import jax.numpy as jnp
  e = model.encode_passages(jnp.ones((2, 8), jnp.int32), jnp.ones((2, 8), jnp.int32))
  assert e.shape == (2, 16)
