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


# --- the folder's identity: settings that change a vector ---------------------------------------

def _encode(tiny_bert, corpus, out, capsys, *extra):
  """encode.py in this process -> (exit status, stderr lines)."""
  from dpr_jax import cli
  status = cli.encode(_cmd(tiny_bert, corpus, out, "--limit", "40", *extra)[2:])
  return status, capsys.readouterr().err.strip().splitlines()


def _snapshot(d):
  return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(Path(d).iterdir())}


@pytest.fixture(scope="module")
def encoded(tiny_bert, corpus, tmp_path_factory):
  """40 passages in 3 chunks, --max_length 64, float32: the reference folder."""
  from dpr_jax import cli
  out = tmp_path_factory.mktemp("encoded") / "emb"
  assert cli.encode(_cmd(tiny_bert, corpus, out, "--limit", "40")[2:]) == 0
  return out


@pytest.mark.parametrize("flag, value, old, new", [
    ("--max_length", "32", "64", "32"), ("--dtype", "float16", "'float32'", "'float16'")])
def test_rerun_with_another_setting_is_refused(encoded, tiny_bert, corpus, tmp_path, capsys,
                                               flag, value, old, new):
  out = tmp_path / "emb"
  shutil.copytree(encoded, out)
  before = _snapshot(out)
  status, err = _encode(tiny_bert, corpus, out, capsys, flag, value)
  assert status == 2 and len(err) == 1 and err[0].startswith(f"error: {out}: ")
  assert f"{flag}: {old} there, {new} in this run" in err[0]
  assert _snapshot(out) == before  # nothing written
  ids, e, _ = read_embeddings(out)
  ids0, e0, _ = read_embeddings(encoded)
  assert ids == ids0 and np.array_equal(e, e0)


def test_cut_run_resumes_only_with_the_same_settings(encoded, tiny_bert, corpus, tmp_path,
                                                     capsys):
  out = tmp_path / "emb"
  shutil.copytree(encoded, out)
  (out / "encode-000-of-001.json").unlink()  # cut after chunk 0: chunks 1 and 2 never written
  for stem in ("part-000-00001", "part-000-00002"):
    (out / f"{stem}.npy").unlink()
    (out / f"{stem}.ids.txt").unlink()
  before = _snapshot(out)
  status, err = _encode(tiny_bert, corpus, out, capsys, "--max_length", "32")
  assert status == 2 and len(err) == 1 and "--max_length: 64 there, 32 in this run" in err[0]
  assert _snapshot(out) == before
  status, _ = _encode(tiny_bert, corpus, out, capsys)
  assert status == 0
  assert _snapshot(out)["part-000-00000.npy"] == before["part-000-00000.npy"]  # kept, not redone
  ids, e, _ = read_embeddings(out)
  ids0, e0, _ = read_embeddings(encoded)
  assert ids == ids0 and len(ids) == 40
  np.testing.assert_allclose(e, e0, atol=1e-5)


def test_folder_from_before_identity_json_is_checked_on_its_manifest(encoded, tiny_bert, corpus,
                                                                     tmp_path, capsys):
  out = tmp_path / "emb"
  shutil.copytree(encoded, out)
  (out / "identity.json").unlink()  # what older folders hold: fingerprint.txt and manifests
  status, err = _encode(tiny_bert, corpus, out, capsys, "--max_length", "32")
  assert status == 2 and len(err) == 1 and "--max_length: 64 there, 32 in this run" in err[0]
  assert not (out / "identity.json").exists()


def test_index_cache_is_keyed_on_the_identity(encoded, tiny_bert, corpus, tmp_path, capsys):
  from dpr_jax.retrieval import index as index_lib
  from dpr_jax.retrieval.encoding import EmbeddingParts
  parts = EmbeddingParts(encoded)
  assert parts.identity["max_length"] == 64 and parts.identity["dtype"] == "float32"
  index_lib.build(parts, "flat", parts.dim, parts.identity).save(tmp_path / "index-flat")
  index_lib.load(tmp_path / "index-flat", parts.identity)
  # The same model and corpus at another length: the cached index is not theirs.
  status, _ = _encode(tiny_bert, corpus, tmp_path / "short", capsys, "--max_length", "32")
  other = EmbeddingParts(tmp_path / "short").identity
  assert status == 0 and {k for k in other if other[k] != parts.identity[k]} == {"max_length"}
  with pytest.raises(index_lib.IndexMismatch, match="max_length=64, but this run has 32"):
    index_lib.load(tmp_path / "index-flat", other)
