"""Latency of one question through `python -m dpr_jax.answer`: retrieve the top k, read them,
answer (what `--interactive` does for each line typed).

  python bench/answer_latency.py --reader runs/reader --retriever hybrid --model minilm \\
      --pooling mean --embeddings emb/minilm --hybrid_lambda 20 --hybrid_depth 100 \\
      --passages ../shared/data/squad/paragraphs.tsv.gz --questions data/squad/dev.qas.jsonl \\
      --n 50 --top_k 10

The first `--warmup` questions compile the reader's length buckets and load the indexes; then
`--n` other questions are answered one at a time. One JSON line: median and p90 milliseconds of
the whole answer, and of its retrieval and reading parts.
"""
import argparse
import json
import platform
import time

import numpy as np


def main():
  from dpr_jax import cli
  from dpr_jax.reader.answer import QA
  from dpr_jax.retrieval import retrieve as R
  ap = cli.Parser("bench/answer_latency.py", __doc__)
  R.add_retrieval_args(ap)
  cli.add_questions_args(ap)
  ap.add_argument("--reader", required=True)
  ap.add_argument("--top_k", type=int, default=10)
  ap.add_argument("--max_length", type=int, default=None,
                  help="reader input tokens (default: its training length)")
  ap.add_argument("--scoring", default="select")
  ap.add_argument("--n", type=int, default=50)
  ap.add_argument("--warmup", type=int, default=10)
  a = ap.parse_args()
  settings = R.settings(a, a.top_k)
  questions = R.read_questions(a)
  rng = np.random.default_rng(0)
  pick = [questions[i] for i in rng.choice(len(questions), a.n + a.warmup, replace=False)]
  qa = QA(a.reader, top_k=a.top_k, scoring=a.scoring, max_length=a.max_length)
  total, ret, read = [], [], []
  for i, q in enumerate(pick):
    t0 = time.perf_counter()
    results = R.retrieve([q], settings)
    t1 = time.perf_counter()
    qa(results)
    t2 = time.perf_counter()
    if i >= a.warmup:
      total.append(t2 - t0)
      ret.append(t1 - t0)
      read.append(t2 - t1)
  ms = lambda xs, p: round(1000 * float(np.percentile(xs, p)), 1)
  print(json.dumps({"bench": "answer_latency", "retriever": a.retriever, "top_k": a.top_k,
                    "max_length": qa.tok.max_length, "scoring": a.scoring,
                    "questions": a.n, "median_ms": ms(total, 50), "p90_ms": ms(total, 90),
                    "retrieval_median_ms": ms(ret, 50), "read_median_ms": ms(read, 50),
                    "max_ms": round(1000 * max(total), 1),
                    "under_1s": sum(t <= 1.0 for t in total), "machine": platform.machine()}))


if __name__ == "__main__":
  main()
