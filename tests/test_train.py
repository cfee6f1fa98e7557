"""The retriever's training with a tiny random BERT: in-process `train()` (metrics, checkpoints,
the workdir check, the non-finite guard, bf16, initialisation from an export), and end-to-end
train.py runs (`slow`): 1 vs 8 devices, 2 processes, SIGKILL and resume."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from subprocess_runs import cpu_env, free_port, kill_after_checkpoint, logged, run_two_processes

REPO = Path(__file__).resolve().parent.parent
WORDS = ("alpha beta gamma delta river mountain city king queen music war science history "
         "ocean planet energy law art church army ship bridge island forest").split()


def _text(rng, n):
  return " ".join(rng.choice(WORDS, n))


def write_dpr_file(path, n, seed, hard=2, question_words=None):
  rng = np.random.default_rng(seed)
  with open(path, "w") as f:
    for i in range(n):
      ctx = lambda: {"title": _text(rng, 2), "text": _text(rng, 20), "passage_id": str(rng.integers(1e9))}
      words = int(rng.integers(*question_words)) if question_words else 6
      f.write(json.dumps({"question": _text(rng, words) + "?", "answers": ["x"],
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
  return cpu_env(devices, CACHE)


def _losses(workdir):
  return logged(workdir, "train/loss")


def _run(cmd, env, timeout=300):
  p = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
  assert p.returncode == 0, p.stderr[-3000:]
  return p


@pytest.fixture(scope="module")
def eight_device_run(tiny_data, tmp_path_factory):
  wd = tmp_path_factory.mktemp("wd8")
  _run(_cmd(wd, tiny_data), _env(8))
  return wd


@pytest.mark.slow
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


@pytest.mark.slow
def test_one_device_gives_the_same_losses(eight_device_run, tiny_data, tmp_path):
  _run(_cmd(tmp_path, tiny_data), _env(1))
  a, b = _losses(eight_device_run), _losses(tmp_path)
  for s in range(1, 6):
    assert abs(a[s] - b[s]) <= 1e-4, (s, a[s], b[s])


@pytest.mark.slow
def test_two_processes_give_the_same_losses(eight_device_run, tiny_data, tmp_path):
  """2 processes x 4 CPU devices (jax.distributed, gloo collectives on localhost). CPU
  collectives between processes are slow here (~5 s a step), so the run is stopped once the
  5 compared steps are logged."""
  port = free_port()
  run_two_processes([_cmd(tmp_path, tiny_data, f"--coordinator=127.0.0.1:{port}",
                          "--num_processes=2", f"--process_id={i}") for i in range(2)],
                    _env(4), tmp_path, until_step=5, timeout=300)
  a, b = _losses(eight_device_run), _losses(tmp_path)
  for s in range(1, 6):
    assert abs(a[s] - b[s]) <= 1e-4, (s, a[s], b[s])


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(eight_device_run, tiny_data, tmp_path):
  cmd = _cmd(tmp_path, tiny_data)
  kill_after_checkpoint(cmd, _env(8), tmp_path / "checkpoints" / "3", timeout=240)
  killed_at = max(_losses(tmp_path))
  assert killed_at < 8
  _run(cmd, _env(8))
  a, b = _losses(eight_device_run), _losses(tmp_path)
  assert sorted(b) == list(range(1, 9))  # no step lost or logged twice
  for s in range(1, 9):
    assert abs(a[s] - b[s]) <= 1e-5, (s, a[s], b[s])


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_data, tmp_path):
  p = subprocess.run(_cmd(tmp_path, tiny_data, "--config.optim.lr=1e38",
                          "--config.optim.clip_norm=0", "--config.optim.warmup_steps=0"),
                     env=_env(1), cwd=REPO, capture_output=True, text=True, timeout=300)
  assert p.returncode != 0
  assert "non-finite training loss" in p.stderr
  assert "last good checkpoint" in p.stderr


@pytest.mark.slow
def test_trained_workdir_loads_best_and_latest(eight_device_run):
  from dpr_jax.training.loading import load_model
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


# --- in-process train() -------------------------------------------------------------------------

def _tiny_config(data, **train):
  from dpr_jax.configs import tiny
  c = tiny.get_config()
  c.data.train_files, c.data.dev_file = map(str, data)
  c.model.bert.hidden_dropout_prob = c.model.bert.attention_probs_dropout_prob = 0.0
  c.train.max_steps, c.train.log_every, c.train.save_every = 4, 0, 2
  for k, v in train.items():
    c.train[k] = v
  return c


def _numpy_in_batch_nll(q, p):
  """DPR's loss by hand: question i's positive is passage i * (1 + H)."""
  s = q @ p.T
  s = s - s.max(1, keepdims=True)
  logp = s - np.log(np.exp(s).sum(1, keepdims=True))
  per_q = p.shape[0] // q.shape[0]
  return float(-logp[np.arange(len(q)), np.arange(len(q)) * per_q].mean())


def _first_batch_loss(c):
  """Step 1's loss recomputed outside the training step: the initial model, batch 0 of the
  data, the in-batch NLL in numpy."""
  from dpr_jax.data import examples as data
  from dpr_jax.models.tokenization import Tokenizer
  from dpr_jax.training import loop
  from dpr_jax.training.loading import tokenizer_path
  ds = [data.load_dataset(c.data.train_files, c.data.keep_negatives)]
  b = data.TrainBatches(ds, [1.0], c.train.global_batch, c.data.num_hard_negatives, c.train.seed)
  qs, ps = b.batch(0, 0, 1)
  tok = Tokenizer(tokenizer_path(c.model.init), c.data.question_max_length,
                  c.data.passage_max_length)
  t = data.tokenize_batch(tok, qs, ps, c.data.question_max_length, c.data.passage_max_length)
  model = loop._model(c)
  q = np.asarray(model.encode_questions(t["q_ids"], t["q_mask"]), np.float64)
  p = np.asarray(model.encode_passages(t["p_ids"], t["p_mask"]), np.float64)
  return _numpy_in_batch_nll(q, p)


def test_train_in_process_then_a_changed_model_or_data_is_refused(tiny_data, tmp_path):
  from dpr_jax.training import harness, loop
  c = _tiny_config(tiny_data)
  wd = tmp_path / "wd"
  last = loop.train(c, wd)
  lines = [json.loads(l) for l in (wd / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines if "train/loss" in l] == [1, 2, 3, 4]  # log_every=0 is fine
  assert [l["step"] for l in lines if "eval/avg_rank" in l] == [4]
  assert sorted(int(p.name) for p in (wd / "checkpoints").iterdir()) == [2, 4]
  assert abs(_losses(wd)[1] - _first_batch_loss(c)) <= 1e-4 * _losses(wd)[1]
  assert last["train/loss"] == _losses(wd)[4]
  recorded = {f: (wd / f).read_bytes() for f in ("config.json", "model.json", "metrics.jsonl")}

  bigger = _tiny_config(tiny_data)
  bigger.model.bert.hidden_size = 64
  with pytest.raises(harness.ConfigChangeError, match=r"model\.bert\.hidden_size: recorded 32, now 64"):
    loop.train(bigger, wd)
  other_data = _tiny_config(tiny_data[::-1])
  with pytest.raises(harness.ConfigChangeError, match=r"data\.dev_file.*data\.train_files"):
    loop.train(other_data, wd)
  assert {f: (wd / f).read_bytes() for f in recorded} == recorded  # nothing rewritten
  assert sorted(int(p.name) for p in (wd / "checkpoints").iterdir()) == [2, 4]

  # Training fields may change: a longer run resumes, keeping the logged steps.
  loop.train(_tiny_config(tiny_data, max_steps=5), wd)
  assert sorted(_losses(wd)) == [1, 2, 3, 4, 5]
  assert all(_losses(wd)[s] == json.loads(l)["train/loss"] for l in
             recorded["metrics.jsonl"].decode().splitlines() if "train/loss" in l
             for s in [json.loads(l)["step"]])


def test_question_groups_train_with_the_loss_of_the_unsorted_batch(tiny_data, tmp_path):
  """`data.question_groups`: step 1's loss is the numpy in-batch NLL of batch 0 in its own
  order, every question padded to the maximum; the question padding logged is that of the
  groups' buckets; gradient caching with groups is refused before anything is written."""
  from dpr_jax.training import loop
  tiny_data = (write_dpr_file(tmp_path / "train.jsonl", 64, 5, question_words=(1, 14)),
               tiny_data[1])
  c = _tiny_config(tiny_data, max_steps=2, log_every=1)
  c.data.question_groups, c.data.question_bucket_multiple = 2, 4
  loop.train(c, tmp_path / "g")
  assert abs(_losses(tmp_path / "g")[1] - _first_batch_loss(c)) <= 1e-4 * _losses(tmp_path / "g")[1]
  # the logged question padding, by hand from batch 0's question lengths: two groups of 8
  # (sorted), each padded to a multiple of 4; one bucket would pad all 16 to 16 tokens
  from dpr_jax.data import examples as data
  from dpr_jax.models.tokenization import Tokenizer
  from dpr_jax.training.loading import tokenizer_path
  ds = [data.load_dataset(c.data.train_files, c.data.keep_negatives)]
  qs, _ = data.TrainBatches(ds, [1.0], 16, 1, c.train.seed).batch(0, 0, 1)
  hf = Tokenizer(tokenizer_path(c.model.init)).hf
  n = sorted(min(len(hf(q)["input_ids"]), 16) for q in qs)
  fed = sum(8 * min(16, -(-max(g) // 4) * 4) for g in (n[:8], n[8:]))
  assert logged(tmp_path / "g", "train/q_padding")[1] == pytest.approx(1 - sum(n) / fed)
  assert 1 - sum(n) / fed < 1 - sum(n) / (16 * 16)
  bad = _tiny_config(tiny_data, grad_cache_chunk=1)
  bad.data.question_groups = 2
  with pytest.raises(ValueError, match="does not combine with train.grad_cache_chunk=1"):
    loop.train(bad, tmp_path / "bad")
  assert not (tmp_path / "bad").exists()


def test_non_finite_loss_is_caught_on_a_step_that_is_not_logged(tiny_data, tmp_path):
  """Warm-up makes step 1's learning rate 0 and step 2's 5e37: step 3's loss is the first
  non-finite one. Nothing is logged between saves (log_every=0): the guard still stops there."""
  from dpr_jax.training import checkpoint, harness, loop
  from dpr_jax.training.loading import load_trained
  c = _tiny_config(tiny_data, max_steps=6, save_every=2)
  c.optim.lr, c.optim.clip_norm, c.optim.warmup_steps = 1e38, 0.0, 2
  with pytest.raises(harness.NonFiniteLoss, match=r"at step 3;.*last good checkpoint \(step 2\)"):
    loop.train(c, tmp_path)
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [2]
  model, _, step = load_trained(tmp_path, "latest")
  assert step == 2
  import jax
  from flax import nnx
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(nnx.to_pure_dict(nnx.state(model))))


def test_bf16_really_computes_in_bf16_and_unknown_dtypes_are_rejected(tiny_data):
  import jax
  import jax.numpy as jnp
  from dpr_jax.training import loop
  c = _tiny_config(tiny_data)
  ids = jnp.ones((2, 8), jnp.int32)
  for name, want in (("bf16", "bf16"), ("bfloat16", "bf16"), ("float32", "f32")):
    c.model.dtype = name
    model = loop._model(c)
    jaxpr = str(jax.make_jaxpr(lambda i: model.encode_questions(i, i))(ids))
    bf16_dots = [l for l in jaxpr.splitlines() if "dot_general" in l and ":bf16[" in l]
    # Per layer: query, key, value, scores, weighted values, attention output, feed-forward x2.
    assert len(bf16_dots) >= (8 * c.model.bert.num_hidden_layers if want == "bf16" else 0), name
    assert (":bf16[" in jaxpr) == (want == "bf16"), name
  c.model.dtype = "float16x"
  with pytest.raises(ValueError, match="model.dtype must be one of"):
    loop._model(c)


def test_training_starts_from_an_exported_folder(tiny_data, tmp_path, minilm_path):
  """`model.init=<export>`: the tokenizer comes from the export's question encoder, exported
  files are readable by everyone, and step 1 equals the loss recomputed outside training."""
  import stat
  from dpr_jax.tools import export
  from dpr_jax.training import loop
  src = _tiny_config(tiny_data)
  export.export_model(loop._model(src), tmp_path / "exp", tokenizer_dir=minilm_path)
  files = [f for f in (tmp_path / "exp").rglob("*") if f.is_file()]
  assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in files), files
  c = _tiny_config(tiny_data, max_steps=1)
  c.model.init = str(tmp_path / "exp")
  loop.train(c, tmp_path / "wd")
  spec = json.loads((tmp_path / "wd" / "model.json").read_text())
  assert spec["tokenizer"] == str(tmp_path / "exp" / "question_encoder")
  assert abs(_losses(tmp_path / "wd")[1] - _first_batch_loss(c)) <= 1e-4


def test_a_rerun_with_another_batch_is_refused_unless_overridden(tiny_data, tmp_path, capsys):
  """Another global batch (or seed, or optimizer setting) maps steps to other batches or
  updates: refused with one error line naming the field, unless `train.allow_config_change`;
  the overridden config is then the recorded one. Logging, validation and run length stay free."""
  from dpr_jax import cli
  from dpr_jax.training import harness, loop
  wd = tmp_path / "wd"
  loop.train(_tiny_config(tiny_data, max_steps=1), wd)
  capsys.readouterr()
  bigger = _tiny_config(tiny_data, max_steps=2, global_batch=8, log_every=3)
  assert cli.run(lambda argv: loop.train(bigger, wd), []) == 2  # as train.py reports it
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: ") and str(wd / "config.json") in err[0]
  assert "train.global_batch: recorded 16, now 8" in err[0]
  assert "max_steps" not in err[0] and "log_every" not in err[0]
  assert "allow_config_change=True" in err[0]
  for field, value in (("seed", 1), ("lr", 1e-4)):
    c = _tiny_config(tiny_data, max_steps=2)
    (c.train if field == "seed" else c.optim)[field] = value
    with pytest.raises(harness.ConfigChangeError, match=rf"\.{field}: recorded"):
      loop.train(c, wd)
  assert json.loads((wd / "config.json").read_text())["train"]["global_batch"] == 16
  assert sorted(_losses(wd)) == [1]

  # Overridden: it continues at step 2 with batches of 8, and records the new config.
  loop.train(_tiny_config(tiny_data, max_steps=2, global_batch=8, allow_config_change=True), wd)
  assert sorted(_losses(wd)) == [1, 2]
  assert json.loads((wd / "config.json").read_text())["train"]["global_batch"] == 8
  # A third run without the flag, other free fields changed, is accepted.
  c = _tiny_config(tiny_data, max_steps=2, global_batch=8, log_every=5, save_every=7)
  c.eval.max_batches, c.eval.every = 1, 3
  loop.train(c, wd)
  assert sorted(_losses(wd)) == [1, 2]
