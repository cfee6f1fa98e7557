"""The reader on the shared training harness, tested like the retriever: in-process (workdir
check, non-finite guard, per-process batch rows, prediction on a hand-made case) and, `slow`,
as separate processes: 1 device = 8 devices = 2 processes x 4 devices, SIGKILL + re-run resumes
bit-for-bit."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import ml_collections
import numpy as np
import pytest
from subprocess_runs import cpu_env, free_port, kill_after_checkpoint, logged, run_two_processes

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
CITIES = ["Paris", "Rome", "Berlin", "Madrid", "Vienna", "Prague", "Lisbon", "Dublin"]


def results(n: int) -> list[dict]:
  """Retrieval results: question i's answer is a city named in passage 0 only."""
  rows = []
  for i in range(n):
    c = CITIES[i % len(CITIES)]
    ctxs = [{"id": f"{i}-0", "title": c, "text": f"The capital is {c} and it is old.",
             "has_answer": True, "score": 1.0}]
    for j in range(1, 4):
      other = CITIES[(i + j) % len(CITIES)]
      ctxs.append({"id": f"{i}-{j}", "title": other, "text": f"Nothing about it in {other}.",
                   "has_answer": False, "score": 0.5})
    rows.append({"question": f"what is capital number {i}?", "answers": [c], "ctxs": ctxs})
  return rows


def make_config(train: str, dev: str, **overrides) -> ml_collections.ConfigDict:
  """configs/reader_squad.py with a tiny random BERT; `overrides`: {"train.max_steps": 8}."""
  from dpr_jax.configs import reader_squad
  c = reader_squad.get_config()
  c.model.init = "random"
  c.model.bert = ml_collections.ConfigDict(dict(hidden_size=32, num_hidden_layers=1,
                                                num_attention_heads=4, intermediate_size=64,
                                                max_position_embeddings=64))
  c.data.train_results, c.data.dev_results, c.data.passages = train, dev, ""
  c.data.max_length = 48
  c.train.batch_questions, c.train.max_steps, c.train.log_every, c.train.save_every = 8, 8, 1, 3
  c.eval.every, c.eval.top_k, c.eval.batch_questions, c.eval.max_questions = 4, 4, 8, 0
  c.eval.at_start = False
  for k, v in overrides.items():
    section, name = k.split(".")
    c[section][name] = v
  return c


@pytest.fixture(scope="module")
def reader_data(tmp_path_factory):
  d = tmp_path_factory.mktemp("reader_data")
  rows = results(24)
  (d / "train.json").write_text(json.dumps(rows[:16]))
  (d / "dev.json").write_text(json.dumps(rows[16:]))
  return str(d / "train.json"), str(d / "dev.json")


def _losses(workdir) -> dict[int, float]:
  return logged(workdir, "train/loss")


def _evals(workdir) -> dict[int, float]:
  return logged(workdir, "eval/em")


# --- in-process ----------------------------------------------------------------------------------

def test_local_rows_split_a_global_batch_over_processes():
  from dpr_jax.training.harness import local_rows
  batch = {"a": np.arange(24).reshape(8, 3), "b": np.arange(8)}
  parts = [local_rows(batch, i, 4) for i in range(4)]
  assert [p["b"].tolist() for p in parts] == [[0, 1], [2, 3], [4, 5], [6, 7]]
  np.testing.assert_array_equal(np.concatenate([p["a"] for p in parts]), batch["a"])
  with pytest.raises(ValueError, match="8 rows does not split over 3 processes"):
    local_rows(batch, 0, 3)


def test_predict_reads_the_selected_passage_and_its_best_span(minilm_path):
  """A stand-in forward with hand-set logits: passage 1 is selected, its best valid span is the
  city; EM / F1 follow."""
  import jax.numpy as jnp
  from dpr_jax.reader import data as reader_data
  from dpr_jax.reader.train import predict, score
  from dpr_jax.training import sharding
  tok = reader_data.ReaderTokenizer(minilm_path, 48, 16)
  rows = results(2)
  rows[0]["ctxs"][1]["text"] = "Its capital is Oslo today."
  encs = [[tok.encode(r["question"], c["title"], c["text"]) for c in r["ctxs"]] for r in rows]

  def token_of(enc, word):
    return next(i for i in range(enc.text_start, enc.text_end)
                if reader_data.span_text(enc, i, i).lower() == word.lower())

  which = {tuple(e.ids): (i, j) for i, row in enumerate(encs) for j, e in enumerate(row)}

  def forward(params, ids, mask):
    """Pairs arrive one per row, in any order: each is recognised by its token ids."""
    n, m, l = ids.shape
    start, end, select = np.zeros((n, m, l)), np.zeros((n, m, l)), np.zeros((n, m))
    for r in range(n):
      i, j = which[tuple(int(t) for t in np.asarray(ids[r, 0])[: int(mask[r, 0].sum())])]
      if (i, j) in ((0, 1), (1, 0)):
        word = "oslo" if i == 0 else CITIES[1]
        select[r, 0] = 5.0
        start[r, 0, token_of(encs[i][j], word)] = end[r, 0, token_of(encs[i][j], word)] = 4.0
      start[r, 0, 0] = end[r, 0, 0] = 9.0  # [CLS]: outside the text, never a span
    return jnp.asarray(start), jnp.asarray(end), jnp.asarray(select)

  mesh = sharding.make_mesh(devices=__import__("jax").devices()[:1])
  preds = predict(forward, None, rows, tok, top_k=4, batch_questions=2, max_answer_length=5,
                  mesh=mesh)
  assert [(p["prediction"], p["passage_rank"]) for p in preds] == [("Oslo", 1), ("Rome", 0)]
  assert score(preds) == {"em": 0.5, "f1": 0.5, "count": 2}


def test_reader_refuses_a_changed_workdir_and_stops_on_a_non_finite_loss(reader_data, tmp_path):
  from dpr_jax.reader import train as reader_train
  from dpr_jax.training import harness
  train, dev = reader_data
  c = make_config(train, dev, **{"train.max_steps": 2, "eval.every": 0})
  reader_train.train(c, tmp_path / "a")
  before = {f: (tmp_path / "a" / f).read_bytes() for f in ("config.json", "model.json")}
  with pytest.raises(harness.ConfigChangeError, match=r"data\.top: recorded 20, now 10"):
    reader_train.train(make_config(train, dev, **{"data.top": 10}), tmp_path / "a")
  # The data order (seed) and the optimiser define the run as well; the step count does not.
  with pytest.raises(harness.ConfigChangeError, match=r"train\.seed: recorded \d+, now 7"):
    reader_train.train(make_config(train, dev, **{"train.max_steps": 2, "eval.every": 0,
                                                  "train.seed": 7}), tmp_path / "a")
  assert {f: (tmp_path / "a" / f).read_bytes() for f in before} == before

  # lr 0 at step 1, 5e37 at step 2: step 3's loss is the first non-finite one; nothing is
  # logged (log_every=0) before the save at step 6.
  bad = make_config(train, dev, **{"train.max_steps": 6, "train.log_every": 0,
                                   "train.save_every": 2, "eval.every": 0})
  bad.optim.lr, bad.optim.clip_norm, bad.optim.warmup_steps = 1e38, 0.0, 2
  with pytest.raises(harness.NonFiniteLoss, match=r"at step 3;.*last good checkpoint \(step 2\)"):
    reader_train.train(bad, tmp_path / "b")
  assert sorted(int(p.name) for p in (tmp_path / "b" / "checkpoints").iterdir()) == [2]
  # config.json / model.json are written by process 0 only: the (one) process here did.
  assert json.loads((tmp_path / "b" / "model.json").read_text())["kind"] == "reader"


# --- separate processes (slow) -----------------------------------------------------------------

DRIVER = """
import json, sys, time
args = json.loads(sys.argv[1])
if args.get("coordinator"):
  import jax
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(args["coordinator"], args["num_processes"], args["process_id"])
sys.path.insert(0, args["tests"])
from test_reader_train import make_config
from dpr_jax.reader import train as reader_train
if args.get("step_sleep"):  # slow each step down, so that a SIGKILL lands mid-run
  batch = reader_train.global_batch
  reader_train.global_batch = lambda *a: (time.sleep(args["step_sleep"]), batch(*a))[1]
reader_train.train(make_config(args["train"], args["dev"]), args["workdir"])
"""

CACHE = Path(os.environ.get("TMPDIR", "/tmp")) / f"dpr_jax_reader_test_cache_{os.getpid()}"


def _env(devices):
  return cpu_env(devices, CACHE)


def _cmd(data, workdir, **extra):
  args = {"train": data[0], "dev": data[1], "workdir": str(workdir), "tests": str(TESTS), **extra}
  return [sys.executable, "-c", DRIVER, json.dumps(args)]


def _run(cmd, devices):
  p = subprocess.run(cmd, env=_env(devices), cwd=REPO, capture_output=True, text=True,
                     timeout=400)
  assert p.returncode == 0, p.stderr[-3000:]


@pytest.fixture(scope="module")
def eight_devices(reader_data, tmp_path_factory):
  wd = tmp_path_factory.mktemp("reader8")
  _run(_cmd(reader_data, wd), 8)
  return wd


@pytest.mark.slow
def test_one_device_gives_the_eight_device_losses(eight_devices, reader_data, tmp_path):
  _run(_cmd(reader_data, tmp_path), 1)
  a, b = _losses(eight_devices), _losses(tmp_path)
  assert sorted(a) == sorted(b) == list(range(1, 9))
  for s in a:
    assert abs(a[s] - b[s]) <= 1e-4 * abs(a[s]), (s, a[s], b[s])
  assert _evals(tmp_path) == _evals(eight_devices) and sorted(_evals(tmp_path)) == [4, 8]


@pytest.mark.slow
def test_two_processes_give_the_eight_device_losses(eight_devices, reader_data, tmp_path):
  """2 processes x 4 CPU devices: each process feeds its half of every batch (and of every
  validation batch). Stopped once step 5 is logged (CPU collectives between processes are slow)."""
  port = free_port()
  run_two_processes([_cmd(reader_data, tmp_path, coordinator=f"127.0.0.1:{port}",
                          num_processes=2, process_id=i) for i in range(2)],
                    _env(4), tmp_path, until_step=5, timeout=400)
  a, b = _losses(eight_devices), _losses(tmp_path)
  for s in range(1, 6):
    assert abs(a[s] - b[s]) <= 1e-4 * abs(a[s]), (s, a[s], b[s])
  assert _evals(tmp_path)[4] == _evals(eight_devices)[4]


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_bit_for_bit(eight_devices, reader_data, tmp_path):
  kill_after_checkpoint(_cmd(reader_data, tmp_path, step_sleep=0.5), _env(8),
                        tmp_path / "checkpoints" / "3", timeout=300)
  assert 3 <= max(_losses(tmp_path)) < 8
  _run(_cmd(reader_data, tmp_path), 8)
  a, b = _losses(eight_devices), _losses(tmp_path)
  assert sorted(b) == list(range(1, 9))  # no step lost or logged twice
  assert all(a[s] == b[s] for s in a), {s: (a[s], b[s]) for s in a if a[s] != b[s]}
  assert _evals(tmp_path) == _evals(eight_devices)
