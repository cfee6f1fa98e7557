"""Retrieval end to end on a small slice of the shared SQuAD corpus: BM25, dense (the packaged
MiniLM), hybrid; results format; index reuse and mismatch; hard-negative mining."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dpr_jax.data.corpus import read_corpus
from dpr_jax.retrieval.retrieve import fuse

REPO = Path(__file__).resolve().parent.parent


def test_fuse_rescores_the_union_exactly():
  dense = (np.array([[0.9, 0.5]]), np.array([[0, 1]]))
  bm25 = (np.array([[7.0, 3.0]]), np.array([[2, 0]]))
  d_all = np.array([0.9, 0.5, 0.1])
  b_all = np.array([3.0, 0.0, 7.0])
  s, r = fuse(dense, bm25, 10.0, 3, lambda qi, rr: d_all[rr], lambda qi, rr: b_all[rr])
  assert list(r[0]) == [0, 2, 1] and np.allclose(s[0], [12.0, 8.0, 5.0])


@pytest.fixture(scope="module")
def slice_files(squad_dir, tmp_path_factory):
  d = tmp_path_factory.mktemp("slice")
  corpus = read_corpus(squad_dir / "paragraphs.tsv.gz")
  qs = [json.loads(l) for l in __import__("gzip").open(squad_dir / "train.qas.jsonl.gz", "rt")][:400:20]
  keep = sorted({p for q in qs for p in q["positive_pids"]} | set(corpus.ids[:150]), key=int)
  row = {p: i for i, p in enumerate(corpus.ids)}
  with open(d / "psgs.tsv", "w") as f:
    f.write("id\ttext\ttitle\n")
    for p in keep:
      f.write(f"{p}\t{corpus.texts[row[p]]}\t{corpus.titles[row[p]]}\n")
  with open(d / "qs.jsonl", "w") as f:
    for q in qs:
      f.write(json.dumps(q) + "\n")
  return d


def _run(*args):
  p = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True)
  assert p.returncode == 0, p.stderr[-3000:]
  return p


@pytest.mark.slow
def test_bm25_dense_hybrid_and_mining(slice_files, tmp_path):
  d = slice_files
  common = ["--passages", str(d / "psgs.tsv"), "--questions", str(d / "qs.jsonl"), "--k", "5"]
  _run("-m", "dpr_jax.retrieve", "--retriever", "bm25", "--out", str(tmp_path / "bm25.json"), *common)
  _run(str(REPO / "encode.py"), "--model", "minilm", "--pooling", "mean", "--passages",
       str(d / "psgs.tsv"), "--out", str(tmp_path / "emb"), "--max_length", "128")
  for kind in ("flat", "hnsw"):
    _run("-m", "dpr_jax.retrieve", "--model", "minilm", "--pooling", "mean", "--embeddings",
         str(tmp_path / "emb"), "--index", kind, "--out", str(tmp_path / f"{kind}.json"), *common)
  _run("-m", "dpr_jax.retrieve", "--retriever", "hybrid", "--model", "minilm", "--pooling", "mean",
       "--embeddings", str(tmp_path / "emb"), "--hybrid_lambda", "20", "--out",
       str(tmp_path / "hybrid.json"), *common)
  flat = json.loads((tmp_path / "flat.json").read_text())
  assert len(flat) == 20 and all(len(r["ctxs"]) == 5 for r in flat)
  c = flat[0]["ctxs"][0]
  assert set(c) == {"id", "title", "text", "score", "has_answer"}
  assert flat[0]["positive_pids"] and flat[0]["answers"]
  hnsw = json.loads((tmp_path / "hnsw.json").read_text())
  assert [x["ctxs"][0]["id"] for x in hnsw] == [x["ctxs"][0]["id"] for x in flat]
  from dpr_jax.retrieval.evaluate import evaluate
  for name in ("bm25", "flat", "hybrid"):
    m = evaluate(json.loads((tmp_path / f"{name}.json").read_text()), ks=(1, 5))
    assert m["top5"] >= 0.6, (name, m)  # the gold paragraphs are in this small corpus
  # A different model against the same index is refused.
  p = subprocess.run([sys.executable, "-m", "dpr_jax.retrieve", "--model", "minilm", "--pooling",
                      "cls", "--normalize", "off", "--embeddings", str(tmp_path / "emb"),
                      "--out", str(tmp_path / "x.json"), *common], cwd=REPO, capture_output=True,
                     text=True)
  assert p.returncode == 2 and "expected embeddings of --model minilm" in p.stderr
  _run("-m", "dpr_jax.mine", "--results", str(tmp_path / "flat.json"), "--passages",
       str(d / "psgs.tsv"), "--out", str(tmp_path / "mined.jsonl"), "--num_hard_negatives", "2")
  from dpr_jax.data.answers import has_answer
  from dpr_jax.data.examples import load_dataset
  ds = load_dataset(tmp_path / "mined.jsonl")
  assert len(ds.examples) == 20
  for ex in ds.examples:
    assert all(not has_answer(ex.answers, h.text) for h in ex.hard_negatives)


def test_mining_drops_positives_and_passages_with_the_answer_by_hand():
  """Ranked p1 (gold), p2 (holds the answer), p3, p4 (holds it, case differs), p5, p6: with 2
  hard negatives, p3 and p5 are kept; the gold and the two answer-bearing passages above p5 are
  counted as passed over. A question without gold takes its first answer-bearing passage as the
  positive; one with neither is skipped."""
  from types import SimpleNamespace
  from dpr_jax.retrieval.mine import mine
  texts = {"p1": "Paris is the capital.", "p2": "Paris again.", "p3": "Lyon is big.",
           "p4": "PARIS, the city.", "p5": "Nice is warm.", "p6": "Paris at the end."}
  ids = list(texts)
  corpus = SimpleNamespace(ids=ids, texts=[texts[i] for i in ids], titles=["t"] * 6, path="c.tsv")
  ctxs = [{"id": i} for i in ids]
  results = [{"question": "capital?", "answers": ["Paris"], "positive_pids": ["p1"], "ctxs": ctxs},
             {"question": "again?", "answers": ["Paris"], "ctxs": ctxs},
             {"question": "none?", "answers": ["Rome"], "ctxs": ctxs}]
  records, stats = mine(results, corpus, 2)
  neg = lambda rec: [c["passage_id"] for c in rec["hard_negative_ctxs"]]
  assert [c["passage_id"] for c in records[0]["positive_ctxs"]] == ["p1"]
  assert neg(records[0]) == ["p3", "p5"]
  assert [c["passage_id"] for c in records[1]["positive_ctxs"]] == ["p1"]  # first with the answer
  assert neg(records[1]) == ["p3", "p5"]
  assert len(records) == 2
  # per question: p1 (positive), p2 and p4 (answer) passed over before p5
  assert stats == {"skipped_no_positive": 1, "dropped_positive": 2, "dropped_has_answer": 4}


def test_mix_appends_bm25_negatives_once_and_never_a_positive_by_hand():
  """DPR's second-round mix: question q1 mined [p3, p5]; its BM25 record lists p5 (already
  there), p1 (its positive) and p7: only p7 is appended. q2 has no BM25 record: counted."""
  from dpr_jax.retrieval.mine import mix_negatives
  ctx = lambda pid: {"title": "t", "text": pid, "passage_id": pid}
  records = [{"id": "q1", "positive_ctxs": [ctx("p1")], "hard_negative_ctxs": [ctx("p3"), ctx("p5")]},
             {"id": "q2", "positive_ctxs": [ctx("p2")], "hard_negative_ctxs": [ctx("p4")]}]
  bm25 = {"q1": {"id": "q1", "hard_negative_ctxs": [ctx("p5"), ctx("p1"), ctx("p7")]}}
  assert mix_negatives(records, bm25) == 1
  assert [c["passage_id"] for c in records[0]["hard_negative_ctxs"]] == ["p3", "p5", "p7"]
  assert [c["passage_id"] for c in records[1]["hard_negative_ctxs"]] == ["p4"]
