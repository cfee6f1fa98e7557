"""Per-query latency of the search service (`python -m dpr_jax.serve`) over HTTP.

  python bench/serve_latency.py --passages psgs.tsv --embeddings emb --model minilm \\
      --pooling mean --questions ../shared/data/squad/train.qas.jsonl.gz --n 100 --k 10

Starts the service in this process, one threaded server per mode on a free loopback port:
`bm25`, `dense`, `hybrid`, and `dense+reader` (GET /answer: retrieval, then the reader over the
k passages). Each is warmed up (compiled) first; then the same n questions (those whose gold
passage is in the corpus) are asked one at a time, round-robin over the modes, so load changes
on the machine fall on every mode alike. `Searcher.search` is also timed directly on the same
questions: the difference is the HTTP + JSON cost. One JSON line per mode: median and p90
milliseconds, and the median's ratio to BM25's (the peer).

The reader: `--reader DIR`, or by default the packaged MiniLM with a reader head after one
training step (same size and cost as a trained MiniLM reader; its answers mean nothing).
"""
import argparse
import gzip
import json
import platform
import statistics
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from dpr_jax.reader.answerer import Answerer
from dpr_jax.retrieval.searcher import Searcher
from dpr_jax.tools import serve


def questions_about(path, corpus, n):
  ids, out = set(corpus.ids), []
  with (gzip.open(path, "rt") if str(path).endswith(".gz") else open(path)) as f:
    for line in f:
      q = json.loads(line)
      if set(q.get("positive_pids") or []) & ids:
        out.append(q["question"])
  step = max(1, len(out) // n)
  return out[::step][:n]


def minilm_reader(searcher, questions, workdir):
  """A MiniLM reader after one training step on the searcher's top passages."""
  from dpr_jax.configs import reader_squad
  from dpr_jax.reader import train as reader_train
  results = [{"question": q, "answers": [hits[0].text.split()[0]],
              "ctxs": [{"id": h.pid, "title": h.title, "text": h.text, "has_answer": j == 0}
                       for j, h in enumerate(hits)]}
             for q, hits in zip(questions, searcher.search(questions, 4))]
  (workdir / "train.json").write_text(json.dumps(results))
  c = reader_squad.get_config()
  c.data.train_results, c.data.dev_results, c.data.passages = str(workdir / "train.json"), "", ""
  c.train.batch_questions, c.train.max_steps, c.data.passages_per_question = 2, 1, 2
  reader_train.train(c, workdir / "reader")
  return workdir / "reader"


def start(searcher, answerer=None):
  server = serve.make_server(serve.create_app(searcher, answerer), "127.0.0.1", 0)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  return f"http://127.0.0.1:{server.port}"


def get(url):
  t = time.perf_counter()
  with urllib.request.urlopen(url, timeout=600) as r:
    json.loads(r.read())
  return (time.perf_counter() - t) * 1e3


def summary(ms):
  ms = sorted(ms)
  return statistics.median(ms), ms[int(0.9 * (len(ms) - 1))]


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--passages", required=True)
  ap.add_argument("--embeddings", required=True)
  ap.add_argument("--model", default="minilm")
  ap.add_argument("--pooling", choices=["cls", "mean"], default="mean")
  ap.add_argument("--questions", required=True, help="JSON-lines with question, positive_pids")
  ap.add_argument("--reader", help="reader workdir (default: a one-step MiniLM reader)")
  ap.add_argument("--n", type=int, default=100)
  ap.add_argument("--k", type=int, default=10)
  a = ap.parse_args()

  kw = dict(model=a.model, pooling=a.pooling, embeddings=a.embeddings)
  searchers = {"bm25": Searcher(a.passages, retriever="bm25"),
               "dense": Searcher(a.passages, retriever="dense", **kw),
               "hybrid": Searcher(a.passages, retriever="hybrid", **kw)}
  qs = questions_about(a.questions, searchers["bm25"].corpus, a.n)
  tmp = Path(tempfile.mkdtemp())
  reader = a.reader or minilm_reader(searchers["dense"], qs[:4], tmp)
  answerer = Answerer(reader, "latest" if not a.reader else "best")
  urls = {name: start(s) + "/search" for name, s in searchers.items()}
  urls["dense+reader"] = start(searchers["dense"], answerer) + "/answer"
  http = {m: [] for m in urls}
  direct = {m: [] for m in searchers}
  for i, q in enumerate(["warm-up question one", "warm-up question two"] + qs):
    query = "?" + urllib.parse.urlencode({"q": q, "k": a.k})
    for m, url in urls.items():
      ms = get(url + query)
      if i >= 2:
        http[m].append(ms)
    for m, s in searchers.items():
      t = time.perf_counter()
      s.search([q], a.k)
      if i >= 2:
        direct[m].append((time.perf_counter() - t) * 1e3)
  peer = summary(http["bm25"])[0]
  for m in urls:
    med, p90 = summary(http[m])
    row = {"mode": m, "questions": len(qs), "k": a.k, "passages": len(searchers["bm25"]),
           "http_median_ms": round(med, 1), "http_p90_ms": round(p90, 1),
           "ratio_to_bm25": round(med / peer, 2)}
    if m in direct:
      row["direct_median_ms"] = round(summary(direct[m])[0], 1)
    row["host"] = platform.node()
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
  main()
