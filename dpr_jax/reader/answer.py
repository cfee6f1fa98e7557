"""End-to-end open-domain QA: retrieve passages, read them, answer.

  python -m dpr_jax.answer --reader runs/reader --retriever bm25 \\
      --passages ../shared/data/squad/paragraphs.tsv.gz --questions data/squad/dev.qas.jsonl \\
      --out predictions.json [--top_k 10] [--limit 300]
  python -m dpr_jax.answer --reader runs/reader --retriever dense --model runs/squad \\
      --embeddings emb/squad --passages ../shared/data/squad/paragraphs.tsv.gz --interactive
  python -m dpr_jax.answer --reader runs/reader --results results.json --passages ... --out ...

The retrieval flags are `dpr_jax.retrieval.retrieve`'s (dense / bm25 / hybrid; `--index mesh`
searches with the embeddings sharded over all devices); `--results` reads an existing results
file instead. Predictions: JSON list of {question, answers, prediction, title,
passage_id, passage_rank, score}; EM and F1 (SQuAD normalisation) are printed when the questions
have answers. `--interactive`: type a question, get the answer, its title and passage.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
from flax import nnx


class QA:
  """A loaded reader (and its compiled forward pass) that answers retrieval results."""

  def __init__(self, reader_dir, which: str = "best", top_k: int = 10,
               max_answer_length: int = 10, batch_questions: int = 4):
    from dpr_jax.training import sharding
    from dpr_jax.reader.train import load_reader, make_forward
    model, self.tok, self.step = load_reader(reader_dir, which)
    graphdef, state = nnx.split(model)
    self.mesh = sharding.make_mesh(devices=jax.local_devices())
    self.params = jax.device_put(nnx.to_pure_dict(state), sharding.replicated(self.mesh))
    self.forward = make_forward(graphdef)
    self.top_k, self.max_answer_length = top_k, max_answer_length
    self.batch_questions = batch_questions

  def __call__(self, results: list[dict]) -> list[dict]:
    from dpr_jax.reader.train import predict
    return predict(self.forward, self.params, results, self.tok, top_k=self.top_k,
                   batch_questions=self.batch_questions,
                   max_answer_length=self.max_answer_length, mesh=self.mesh)


def interactive(a, qa: QA) -> None:
  from dpr_jax.data.corpus import Question
  from dpr_jax.retrieval.retrieve import run
  print("Type a question (empty line or Ctrl-D to quit).", flush=True)
  for line in sys.stdin:
    text = line.strip()
    if not text:
      break
    p = qa(run(a, [Question(text, [])]))[0]
    print(f"answer: {p['prediction']}\n  from: {p['title']} (passage {p['passage_id']}, "
          f"rank {p['passage_rank'] + 1})\n  {p['passage'][:400]}\n", flush=True)


def main(argv=None):
  from dpr_jax.retrieval.retrieve import add_retrieval_args
  ap = argparse.ArgumentParser(prog="python -m dpr_jax.answer", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  add_retrieval_args(ap, questions_required=False)
  ap.add_argument("--reader", required=True, help="reader training workdir")
  ap.add_argument("--reader_which", choices=["best", "latest"], default="best")
  ap.add_argument("--results", help="read this results JSON instead of retrieving")
  ap.add_argument("--top_k", type=int, default=10, help="passages read per question")
  ap.add_argument("--max_answer_length", type=int, default=10, help="tokens (DPR: 10)")
  ap.add_argument("--out", help="predictions JSON")
  ap.add_argument("--interactive", action="store_true")
  a = ap.parse_args(argv)
  a.k = a.top_k  # retrieve exactly the passages the reader reads
  qa = QA(a.reader, a.reader_which, a.top_k, a.max_answer_length)
  if a.interactive:
    return interactive(a, qa)
  if not (a.results or a.questions):
    ap.error("give --questions (to retrieve) or --results, or --interactive")
  if a.results:
    from dpr_jax.data.corpus import read_corpus
    from dpr_jax.reader.data import load_results
    results = load_results(a.results, read_corpus(a.passages), a.limit)
  else:
    from dpr_jax.retrieval.retrieve import run
    results = run(a)
  from dpr_jax.reader.train import score
  preds = qa(results)
  if a.out:
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(preds, ensure_ascii=False, indent=1))
  if any(p["answers"] for p in preds):
    s = score(preds)
    print(f"{s['count']} questions, top {a.top_k} passages read: "
          f"EM {100 * s['em']:.2f}  F1 {100 * s['f1']:.2f}")


if __name__ == "__main__":
  from dpr_jax import cpu_malloc
  cpu_malloc.ensure()  # DPR_JAX_MALLOC=1: re-executes this command (see cpu_malloc)
  sys.exit(main())
