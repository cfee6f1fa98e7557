"""The mesh index against a numpy brute-force top-k: 1 and 8 devices, 2 processes x 4 devices,
ties, storage dtypes, bad parts, memory planning; approx_max_k recall and `--index mesh` against
FAISS flat on MiniLM embeddings of a SQuAD slice."""
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from dpr_jax.retrieval import mesh_index
from dpr_jax.training import sharding

REPO = Path(__file__).resolve().parent.parent


def _tied(n=1003, q=37, d=16, seed=0):
  """Small integers: every dot product is exact in fp32/fp16/bf16 and most scores tie; the
  duplicated rows put equal passages on different devices."""
  rng = np.random.default_rng(seed)
  x = rng.integers(-2, 3, size=(n, d)).astype(np.float32)
  x[n - 40:] = x[:40]  # the same vectors at both ends of the corpus
  return x, rng.integers(-2, 3, size=(q, d)).astype(np.float32)


def _truth(x, q, k):
  """Brute force: all scores, stable sort, so ties go to the lower row."""
  s = q.astype(np.float64) @ x.astype(np.float64).T
  rows = np.argsort(-s, axis=1, kind="stable")[:, :k]
  return np.take_along_axis(s, rows, 1), rows


def _mesh(n):
  if len(jax.devices()) < n:
    pytest.skip(f"needs {n} devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
  return sharding.make_mesh(devices=jax.devices()[:n])


@pytest.mark.parametrize("devices", [1, 8])
@pytest.mark.parametrize("dtype,chunk", [("float32", 16384), ("float16", 40), ("bfloat16", 64)])
def test_equals_brute_force_with_ties(devices, dtype, chunk):
  x, q = _tied()
  idx = mesh_index.from_array(x, [f"p{i}" for i in range(len(x))], mesh=_mesh(devices),
                              dtype=dtype, chunk=chunk, query_batch=16)
  assert idx.emb.shape[0] % devices == 0 and idx.emb.shape[0] >= len(x)
  scores, rows = idx.search(q, 60)
  s, r = _truth(x, q, 60)
  np.testing.assert_array_equal(rows, r)
  np.testing.assert_array_equal(scores, s.astype(np.float32))


def test_padding_rows_are_never_returned():
  """7 passages on 8 devices: 1 row of padding per device; k above N gives N results."""
  x = -np.ones((7, 4), np.float32) * np.arange(1, 8)[:, None]  # every real score is negative
  scores, rows = mesh_index.from_array(x, list("abcdefg"), mesh=_mesh(8)).search(
      np.ones((2, 4), np.float32), 50)
  assert rows.shape == (2, 7)
  np.testing.assert_array_equal(rows[0], np.arange(7))
  np.testing.assert_array_equal(scores[0], -4.0 * np.arange(1, 8))


def write_parts(d: Path, x: np.ndarray, shards=(0.45,), part_rows=150, dtype="float16"):
  """An encode.py output directory by hand: 2 shards split at `shards`, parts of part_rows."""
  d.mkdir(parents=True, exist_ok=True)
  cuts = [0, *[int(len(x) * f) for f in shards], len(x)]
  for s in range(len(cuts) - 1):
    stems = []
    for c, a in enumerate(range(cuts[s], cuts[s + 1], part_rows)):
      b = min(a + part_rows, cuts[s + 1])
      stem = f"part-{s:03d}-{c:05d}"
      np.save(d / f"{stem}.npy", x[a:b].astype(dtype))
      (d / f"{stem}.ids.txt").write_text("".join(f"p{i}\n" for i in range(a, b)))
      stems.append(stem)
    (d / f"encode-{s:03d}-of-{len(cuts) - 1:03d}.json").write_text(json.dumps(
        {"fingerprint": "fp", "corpus": "/c.tsv", "num_shards": len(cuts) - 1, "shard_id": s,
         "count": cuts[s + 1] - cuts[s], "dim": x.shape[1], "dtype": dtype, "parts": stems}))
  return d


def test_load_parts_on_8_devices(tmp_path, capsys):
  x, q = _tied(n=1000)
  idx = mesh_index.load(write_parts(tmp_path / "emb", x), mesh=_mesh(8), chunk=48)
  assert idx.ids[:2] == ["p0", "p1"] and idx.identity == {"fingerprint": "fp", "corpus": "/c.tsv"}
  assert idx.emb.dtype == np.float16  # the parts' dtype by default
  assert "1,000 x 16 float16 over 8 cpu devices" in capsys.readouterr().err
  scores, rows = idx.search(q, 25)
  s, r = _truth(x, q, 25)
  np.testing.assert_array_equal(rows, r)
  np.testing.assert_array_equal(scores, s.astype(np.float32))


def test_bad_parts_and_too_large(tmp_path):
  x, _ = _tied(n=400)
  x[321, 3] = np.nan
  d = write_parts(tmp_path / "emb", x)
  with pytest.raises(mesh_index.BadEmbeddings, match=r"part-001-00000\.npy: row 141 holds"):
    mesh_index.load(d, mesh=_mesh(1), log=False)
  with pytest.raises(mesh_index.CorpusTooLarge, match=r"needs 0\.00 GiB over 8 devices") as e:
    mesh_index.load(d, mesh=_mesh(8), log=False, device_bytes=1000)
  assert isinstance(e.value, ValueError)
  np.save(d / "part-000-00000.npy", np.zeros((3, 16), np.float16))
  with pytest.raises(mesh_index.BadEmbeddings, match=r"part-000-00000\.npy: expected \[150, 16\]"):
    mesh_index.load(d, mesh=_mesh(1), log=False)


def test_retrieve_index_mesh_refuses_a_corpus_too_large(tmp_path, monkeypatch):
  from dpr_jax.retrieval import retrieve
  d = write_parts(tmp_path / "emb", _tied(n=400)[0])
  monkeypatch.setattr(mesh_index, "device_bytes_available", lambda mesh: 1000)
  with pytest.raises(mesh_index.CorpusTooLarge,
                     match=r"400 x 16 float16 .* the corpus needs [0-9.]+ GiB over"):
    retrieve.dense_index.__wrapped__(str(d), "mesh")


def test_memory_arithmetic_for_21m_on_8_devices():
  """21,015,324 x 768 fp16 over 8 devices: 2,627,520 rows (161 chunks of 16,320) per device."""
  mesh = _mesh(8)
  assert mesh_index.layout(21_015_324, 8, 16384) == (161 * 16320, 16320)
  line = mesh_index.check_memory(21_015_324, 768, "float16", mesh, 16384, 256, 80 * 2**30)
  store = 161 * 16320 * 768 * 2
  assert f"({store / 2**20:,.1f} MiB embeddings)" in line
  with pytest.raises(mesh_index.CorpusTooLarge):
    mesh_index.check_memory(21_015_324, 768, "float16", mesh, 16384, 256, 3 * 2**30)


WORKER = textwrap.dedent("""
  import json, sys
  import numpy as np
  from dpr_jax.training import sharding
  sharding.start_processes(sys.argv[1], 2, int(sys.argv[2]))
  from dpr_jax.retrieval import mesh_index
  read = []
  orig = mesh_index._read_rows
  def spy(spans, start, stop, *a):
    read.extend(str(p.name) for p, lo, hi in spans if lo < stop and hi > start)
    return orig(spans, start, stop, *a)
  mesh_index._read_rows = spy
  idx = mesh_index.load(sys.argv[3], log=False)
  q = np.load(sys.argv[4])
  s, r = idx.search(q, 25)
  np.savez(sys.argv[5], scores=s, rows=r, read=np.array(sorted(set(read))))
""")


def test_two_processes_of_4_devices(tmp_path):
  x, q = _tied(n=1000)
  d = write_parts(tmp_path / "emb", x, shards=(0.25,))  # shard 0: rows 0..249, parts of 150
  np.save(tmp_path / "q.npy", q)
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
         "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
  procs = [subprocess.Popen([sys.executable, "-c", WORKER, f"127.0.0.1:{port}", str(i), str(d),
                             str(tmp_path / "q.npy"), str(tmp_path / f"out{i}.npz")],
                            env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  try:
    for p in procs:
      assert p.wait(timeout=240) == 0, p.stderr.read()[-3000:]
  finally:
    for p in procs:
      p.kill()
  s, r = _truth(x, q, 25)
  outs = [np.load(tmp_path / f"out{i}.npz") for i in range(2)]
  for o in outs:
    np.testing.assert_array_equal(o["rows"], r)
    np.testing.assert_array_equal(o["scores"], s.astype(np.float32))
  # 1,000 rows padded to 8 x 128: rows 0..511 live on process 0's devices, 512..1023 on process 1's.
  assert list(outs[0]["read"]) == ["part-000-00000.npy", "part-000-00001.npy",
                                   "part-001-00000.npy", "part-001-00001.npy"]
  assert "part-000-00000.npy" not in list(outs[1]["read"])


@pytest.fixture(scope="module")
def squad_slice(squad_dir, tmp_path_factory):
  """The first 300 SQuAD paragraphs plus the gold paragraphs of 40 questions, encoded by
  encode.py with the packaged MiniLM (fp16 parts of 128 rows)."""
  import gzip
  from dpr_jax.data.corpus import read_corpus
  d = tmp_path_factory.mktemp("squad_slice")
  corpus = read_corpus(squad_dir / "paragraphs.tsv.gz")
  qs = [json.loads(l) for l in gzip.open(squad_dir / "train.qas.jsonl.gz", "rt")][:4000:100]
  keep = sorted({p for q in qs for p in q["positive_pids"]} | set(corpus.ids[:300]), key=int)
  row = {p: i for i, p in enumerate(corpus.ids)}
  with open(d / "psgs.tsv", "w") as f:
    f.write("id\ttext\ttitle\n")
    f.writelines(f"{p}\t{corpus.texts[row[p]]}\t{corpus.titles[row[p]]}\n" for p in keep)
  with open(d / "qs.jsonl", "w") as f:
    f.writelines(json.dumps(q) + "\n" for q in qs)
  from dpr_jax import encode as encode_cli
  encode_cli.main(["--model", "minilm", "--pooling", "mean", "--passages", str(d / "psgs.tsv"),
                   "--out", str(d / "emb"), "--max_length", "96", "--chunk_size", "128"])
  return d


def test_retrieve_index_mesh_gives_the_flat_ids(squad_slice, tmp_path):
  from dpr_jax.retrieval import retrieve
  d = squad_slice
  out = {}
  for kind in ("flat", "mesh"):
    retrieve.main(["--model", "minilm", "--pooling", "mean", "--embeddings", str(d / "emb"),
                   "--passages", str(d / "psgs.tsv"), "--questions", str(d / "qs.jsonl"),
                   "--k", "100", "--index", kind, "--no_text", "--out", str(tmp_path / kind)])
    out[kind] = json.loads((tmp_path / kind).read_text())
  assert len(out["mesh"]) == 40
  for f, m in zip(out["flat"], out["mesh"]):
    assert [c["id"] for c in m["ctxs"]] == [c["id"] for c in f["ctxs"]]
    np.testing.assert_allclose([c["score"] for c in m["ctxs"]], [c["score"] for c in f["ctxs"]],
                               rtol=0, atol=1e-6)  # fp32 sums in another order


def test_approx_max_k_recall_at_100(squad_slice):
  """approx_max_k (recall target 0.95) against exact top-100 on real MiniLM embeddings."""
  from dpr_jax.retrieval.retrieve import encode_questions
  qs = [json.loads(l)["question"] for l in open(squad_slice / "qs.jsonl")]
  q, _ = encode_questions("minilm", qs, pooling="mean")
  exact = mesh_index.load(squad_slice / "emb", log=False)
  approx = mesh_index.load(squad_slice / "emb", log=False, approx=True, recall_target=0.95)
  _, r_exact = exact.search(q, 100)
  _, r_approx = approx.search(q, 100)
  recall = np.mean([len(set(a) & set(b)) / 100 for a, b in zip(r_exact, r_approx)])
  print(f"approx_max_k recall@100 = {recall:.4f} on {jax.devices()[0].platform}")
  assert recall >= 0.99
