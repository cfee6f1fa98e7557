"""Retrieval end to end on a small slice of the shared SQuAD corpus: BM25, dense (the packaged
MiniLM), hybrid; results format; index reuse and mismatch; hard-negative mining."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dpr_jax.data.corpus import read_corpus
from dpr_jax.retrieval.dense import fuse

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


PASSAGES = [("p1", "the river flows to the sea", "River"),
            ("p2", "paris is the capital of france", "Paris"),
            ("p3", "the king and the queen of music", "Music"),
            ("p4", "mountains rise above the city of paris", "City"),
            ("p5", "science explains war and peace", "Science"),
            ("p6", "alpha beta gamma delta", "Greek")]
QUESTIONS = ["capital of france", "who rules music", "where do rivers flow", "paris city"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, minilm_path):
  """Six passages, a random 1-layer BERT (MiniLM's tokenizer) and its mean-pooled fp32
  embeddings (a random BERT's [CLS] vectors are nearly parallel)."""
  import shutil
  from flax import nnx
  from safetensors.numpy import save_file
  from dpr_jax import cli
  from dpr_jax.models.bert import Bert, BertConfig
  from dpr_jax.models.hf import bert_tensors
  d = tmp_path_factory.mktemp("tiny")
  cfg = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=32, max_position_embeddings=64)
  (d / "bert").mkdir()
  (d / "bert" / "config.json").write_text(json.dumps({**cfg.to_hf(), "model_type": "bert"}))
  save_file(bert_tensors(Bert(cfg, rngs=nnx.Rngs(0))), str(d / "bert" / "model.safetensors"))
  for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    if (minilm_path / f).is_file():
      shutil.copy(minilm_path / f, d / "bert" / f)
  (d / "psgs.tsv").write_text("id\ttext\ttitle\n" + "".join(f"{i}\t{t}\t{ti}\n"
                                                         for i, t, ti in PASSAGES))
  assert cli.encode(["--model", str(d / "bert"), "--passages", str(d / "psgs.tsv"), "--out",
                     str(d / "emb"), "--chunk_size", "4", "--max_length", "16",
                     "--dtype", "float32", "--pooling", "mean"]) == 0
  return d


def _fresh_caches():
  from dpr_jax.retrieval import dense, retrieve, searcher
  for f in (retrieve._searcher, searcher.load_corpus, searcher.load_bm25, dense.dense_index):
    f.cache_clear()


def _brute_force(d, lam=None):
  """Every passage scored with numpy from the .npy parts (and bm25s' own full scores for the
  hybrid): -> ids of each question's passages, best first, and their scores."""
  from dpr_jax.retrieval.bm25 import BM25
  from dpr_jax.retrieval.dense import encode_questions
  ids, emb = [], []
  for npy in sorted((d / "emb").glob("part-*.npy")):
    ids += npy.with_suffix(".ids.txt").read_text().split("\n")[:-1]
    emb.append(np.load(npy))
  q, _ = encode_questions(str(d / "bert"), QUESTIONS, pooling="mean")
  dense = np.asarray(q, np.float64) @ np.concatenate(emb).astype(np.float64).T  # [Q, N]
  if lam is not None:
    row = {p: i for i, p in enumerate(ids)}
    bm = BM25([t for _, _, t in PASSAGES], [x for _, x, _ in PASSAGES])
    full = bm.all_scores(QUESTIONS)
    order = [row[p] for p, _, _ in PASSAGES]  # BM25 rows are corpus rows
    bm25 = np.zeros_like(dense)
    for qi in range(len(QUESTIONS)):
      bm25[qi, order] = full(qi)
    dense = bm25 + lam * dense
  top = np.argsort(-dense, axis=1, kind="stable")
  return [[ids[j] for j in t] for t in top], np.take_along_axis(dense, top, 1)


@pytest.mark.parametrize("retriever,lam", [("dense", None), ("hybrid", 3.0)])
def test_retrieve_equals_a_numpy_brute_force_top_k(tiny, retriever, lam):
  """Dense: the exact top 4 of q . p over the six passages. Hybrid with a depth past the corpus
  size: every passage is a candidate, so the result is the exact top 4 of BM25 + lam * dense."""
  from dpr_jax.data.corpus import Question
  from dpr_jax.retrieval import retrieve
  _fresh_caches()
  s = retrieve.Settings(passages=str(tiny / "psgs.tsv"), retriever=retriever,
                        model=str(tiny / "bert"), embeddings=str(tiny / "emb"), k=4,
                        pooling="mean", hybrid_lambda=lam or 1.0)
  got = retrieve.retrieve([Question(q, []) for q in QUESTIONS], s)
  want_ids, want_scores = _brute_force(tiny, lam)
  for r, ids, scores in zip(got, want_ids, want_scores):
    assert [c["id"] for c in r["ctxs"]] == ids[:4]
    np.testing.assert_allclose([c["score"] for c in r["ctxs"]], scores[:4], rtol=1e-5,
                               atol=1e-5)


def test_interactive_hybrid_loads_corpus_and_embeddings_once(tiny, monkeypatch, capsys):
  """`answer --interactive --retriever hybrid`: three questions read the corpus once and the
  embedding parts twice in all (the index build and the hybrid's vectors), on the first one."""
  from dpr_jax.data import corpus as corpus_lib
  from dpr_jax.reader.answer import interactive
  from dpr_jax.retrieval import encoding, retrieve
  _fresh_caches()
  for f in (tiny / "emb").glob("index-*"):
    import shutil
    shutil.rmtree(f)
  reads = {"corpus": 0, "parts": 0}
  read_corpus, parts_iter = corpus_lib.read_corpus, encoding.EmbeddingParts.__iter__

  def counted_corpus(*a, **k):
    reads["corpus"] += 1
    return read_corpus(*a, **k)

  def counted_parts(self):
    reads["parts"] += 1
    return parts_iter(self)
  monkeypatch.setattr(corpus_lib, "read_corpus", counted_corpus)
  monkeypatch.setattr(encoding.EmbeddingParts, "__iter__", counted_parts)
  s = retrieve.Settings(passages=str(tiny / "psgs.tsv"), retriever="hybrid",
                        model=str(tiny / "bert"), embeddings=str(tiny / "emb"), k=2,
                        pooling="mean")
  seen = []

  def qa(results):
    seen.append([c["id"] for c in results[0]["ctxs"]])
    c = results[0]["ctxs"][0]
    return [{"prediction": "x", "title": c["title"], "passage_id": c["id"], "passage_rank": 0,
             "passage": c["text"], "span_score": 1.0, "passage_score": 1.0,
             "retriever_score": c["score"]}]
  interactive(s, qa, lines=[q + "\n" for q in QUESTIONS[:3]])
  assert len(seen) == 3 and all(len(ids) == 2 for ids in seen)
  assert reads == {"corpus": 1, "parts": 2}
  assert capsys.readouterr().out.count("answer: x") == 3
