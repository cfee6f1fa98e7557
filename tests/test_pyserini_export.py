"""`python -m dpr_jax.export --format pyserini`: the FAISS index and docid file of Pyserini's
FaissSearcher layout, read back with faiss directly the way `FaissSearcher.load_index` does."""
import json

import numpy as np
import pytest

from dpr_jax import cli


def _emb_dir(d, parts):
  """An encode.py output folder written by hand: `parts` is [(ids, [n, dim] array)]."""
  d.mkdir()
  stems = []
  for i, (ids, e) in enumerate(parts):
    stem = f"part-000-{i:05d}"
    np.save(d / f"{stem}.npy", e.astype(np.float16))
    (d / f"{stem}.ids.txt").write_text("".join(f"{p}\n" for p in ids))
    stems.append(stem)
  (d / "encode-000-of-001.json").write_text(json.dumps({
      "fingerprint": "f0", "corpus": "p.tsv", "num_shards": 1, "shard_id": 0, "parts": stems,
      "count": sum(len(ids) for ids, _ in parts), "dim": parts[0][1].shape[1]}))
  return d


def test_pyserini_layout_reads_back_with_faiss(tmp_path):
  import faiss
  e = np.array([[1, 0, 0], [0, 1, 0], [0.5, 0.75, 0], [0, 0, 1], [0.5, 0.5, 0.5]], np.float32)
  emb = _emb_dir(tmp_path / "emb", [(["007", "p2", "p3"], e[:3]), (["p4", "x-5"], e[3:])])
  assert cli.export(["--format", "pyserini", "--embeddings", str(emb), "--out",
                     str(tmp_path / "out")]) == 0
  index = faiss.read_index(str(tmp_path / "out" / "index"))  # FaissSearcher.load_index
  docids = [line.rstrip() for line in open(tmp_path / "out" / "docid")]
  assert docids == ["007", "p2", "p3", "p4", "x-5"]  # ids as strings, in row order
  assert index.ntotal == 5 and index.d == 3 and index.metric_type == faiss.METRIC_INNER_PRODUCT
  np.testing.assert_array_equal(index.reconstruct_n(0, 5), e)
  scores, rows = index.search(np.array([[0.0, 1.0, 0.1]], np.float32), 2)
  # by hand: 007 0, p2 1.0, p3 0.75, p4 0.1, x-5 0.5 + 0.05
  assert [docids[r] for r in rows[0]] == ["p2", "p3"]
  np.testing.assert_allclose(scores[0], [1.0, 0.75], atol=1e-6)
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["docid", "index"]


@pytest.mark.parametrize("argv,match", [
    (["--format", "pyserini", "--out", "o"], "--embeddings"),
    (["--embeddings", "e", "--out", "o"], "--format pyserini"),
])
def test_pyserini_flags_are_checked(argv, match, capsys):
  assert cli.export(argv) == 2
  assert match in capsys.readouterr().err


def test_duplicate_ids_are_refused(tmp_path, capsys):
  e = np.eye(2, dtype=np.float32)
  emb = _emb_dir(tmp_path / "emb", [(["a", "a"], e)])
  assert cli.export(["--format", "pyserini", "--embeddings", str(emb), "--out",
                     str(tmp_path / "out")]) == 2
  assert "found 'a' again" in capsys.readouterr().err
  assert not (tmp_path / "out" / "index").exists()
