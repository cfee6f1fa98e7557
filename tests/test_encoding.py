"""encode.py: sharding of the corpus, kill + resume, model mismatch."""
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dpr_jax.retrieval.encoding import read_embeddings, shard_rows

REPO = Path(__file__).resolve().parent.parent
WORDS = "alpha beta gamma delta river mountain city king queen music war science".split()


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, minilm_path):
  torch = pytest.importorskip("torch")
  import transformers
  torch.manual_seed(0)
  m = transformers.BertModel(transformers.BertConfig(
      hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
      add_pooling_layer=False)
  d = tmp_path_factory.mktemp("tiny_bert")
  m.save_pretrained(d)
  for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    shutil.copy(minilm_path / f, d / f)
  return d


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  rng = np.random.default_rng(0)
  f = tmp_path_factory.mktemp("corpus") / "psgs.tsv"
  with open(f, "w") as out:
    out.write("id\ttext\ttitle\n")
    for i in range(600):
      out.write(f"p{i}\t{' '.join(rng.choice(WORDS, rng.integers(3, 60)))}\tT{i % 7}\n")
  return f


def _cmd(model, corpus, out, *extra):
  return [sys.executable, str(REPO / "encode.py"), "--model", str(model), "--passages",
          str(corpus), "--out", str(out), "--chunk_size", "16", "--batch_size", "8",
          "--max_length", "64", "--dtype", "float32", *extra]


def test_shard_rows_partition():
  parts = [shard_rows(10, i, 3) for i in range(3)]
  assert [list(p) for p in parts] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_output(tiny_bert, corpus, tmp_path):
  env = {"JAX_PLATFORMS": "cpu", **__import__("os").environ}
  one = tmp_path / "one"
  subprocess.run(_cmd(tiny_bert, corpus, one), check=True, capture_output=True, env=env)
  ids1, e1, m1 = read_embeddings(one)
  assert ids1 == [f"p{i}" for i in range(600)] and m1[0]["count"] == 600

  two = tmp_path / "two"
  p = subprocess.Popen(_cmd(tiny_bert, corpus, two), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=env)
  deadline = time.time() + 120
  while not (two / "part-000-00002.npy").exists() and time.time() < deadline and p.poll() is None:
    time.sleep(0.01)
  p.send_signal(signal.SIGKILL)
  p.wait()
  done = len(list(two.glob("part-*.npy")))
  assert p.returncode == -signal.SIGKILL and 0 < done < 38, "not killed mid-run"
  assert not (two / "encode-000-of-001.json").exists()
  subprocess.run(_cmd(tiny_bert, corpus, two), check=True, capture_output=True, env=env)
  ids2, e2, _ = read_embeddings(two)
  assert ids2 == ids1
  np.testing.assert_allclose(e2, e1, atol=1e-5)


@pytest.mark.slow
def test_shards_cover_corpus_once_and_other_model_is_refused(tiny_bert, corpus, tmp_path):
  out = tmp_path / "s"
  for i in range(2):
    subprocess.run(_cmd(tiny_bert, corpus, out, "--shard_id", str(i), "--num_shards", "2",
                        "--limit", "100"), check=True, capture_output=True)
  ids, e, ms = read_embeddings(out)
  assert ids == [f"p{i}" for i in range(100)] and e.shape == (100, 32) and len(ms) == 2
  p = subprocess.run(_cmd("minilm", corpus, out, "--limit", "100"), capture_output=True, text=True)
  assert p.returncode != 0 and "another model" in p.stderr
