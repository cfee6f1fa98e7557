"""Pyserini itself reads our exports: `python -m pyserini.search.faiss` over the index of
`export --format pyserini`, its questions embedded by Pyserini's `AutoQueryEncoder` (PyTorch)
from our sentence-transformers export, gives `retrieve`'s ranking on 300 SQuAD paragraphs."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dpr_jax import cli
from dpr_jax.data.corpus import read_corpus
from dpr_jax.retrieval import retrieve

pytest.importorskip("pyserini")
K = 10
RUNNER = Path(__file__).parent / "pyserini_search.py"


def _run(path):
  """{qid: [(docid, score)]} in the file's rank order."""
  out = {}
  for line in Path(path).read_text().splitlines():
    qid, _, pid, rank, score, _ = line.split()
    out.setdefault(qid, []).append((pid, float(score), int(rank)))
  for hits in out.values():
    assert [r for _, _, r in hits] == list(range(1, len(hits) + 1))
  return {q: [(p, s) for p, s, _ in hits] for q, hits in out.items()}


@pytest.fixture(scope="module")
def runs(serve_slice, minilm_path, tmp_path_factory):
  from dpr_jax.models.bert import DualEncoder
  from dpr_jax.models.st_folder import load_st_encoder
  from dpr_jax.models.tokenization import Tokenizer
  from dpr_jax.retrieval.encoding import encode_corpus
  from dpr_jax.tools import st_export
  from dpr_jax.training.loading import load_model
  d = tmp_path_factory.mktemp("pyserini")
  model, tok_path, desc = load_model("minilm", pooling="mean")
  encode_corpus(model, Tokenizer(tok_path, passage_max_length=128),
                read_corpus(serve_slice / "psgs.tsv"), d / "emb", description=desc,
                max_length=128)
  assert cli.export(["--format", "pyserini", "--embeddings", str(d / "emb"),
                     "--out", str(d / "index")]) == 0
  st_export.export_st(DualEncoder(load_st_encoder(minilm_path)[0]), d / "encoder",
                      tokenizer_dir=minilm_path)
  qs = [json.loads(line) for line in open(serve_slice / "qs.jsonl")]
  (d / "topics.tsv").write_text("".join(f"{q['id']}\t{q['question']}\n" for q in qs))
  retrieve.main(["--model", "minilm", "--pooling", "mean", "--embeddings", str(d / "emb"),
                 "--passages", str(serve_slice / "psgs.tsv"), "--questions",
                 str(serve_slice / "qs.jsonl"), "--k", str(K), "--retriever", "dense",
                 "--format", "trec", "--out", str(d / "ours.trec")])
  p = subprocess.run([sys.executable, str(RUNNER), "--index", str(d / "index"), "--topics",
                      str(d / "topics.tsv"), "--encoder", str(d / "encoder"),
                      "--encoder-class", "auto", "--pooling", "mean", "--l2-norm",
                      "--hits", str(K), "--output", str(d / "pyserini.trec")],
                     capture_output=True, text=True, timeout=900)
  assert p.returncode == 0, p.stderr[-3000:]
  return _run(d / "ours.trec"), _run(d / "pyserini.trec"), [q["id"] for q in qs]


def test_pyserini_ranks_our_index_as_retrieve_does(runs):
  ours, theirs, qids = runs
  assert sorted(ours) == sorted(theirs) == sorted(qids) and len(qids) == 50
  swaps = 0
  for q in qids:
    a, b = ours[q], theirs[q]
    assert len(a) == len(b) == K
    # The same passage vectors; the question vectors of two implementations (JAX here,
    # PyTorch in Pyserini) agree to float32 rounding, so the scores do too.
    np.testing.assert_allclose([s for _, s in b], [s for _, s in a], atol=1e-4)
    for (pa, sa), (pb, sb) in zip(a, b):
      if pa != pb:  # only passages whose scores tie to that rounding may change places
        assert abs(sa - sb) < 1e-4 and dict(a).get(pb) is not None
        swaps += 1
  assert swaps <= 2
