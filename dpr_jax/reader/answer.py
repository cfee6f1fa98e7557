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

import sys

import jax
from flax import nnx

from dpr_jax.data.textio import write_json


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


def interactive(settings, qa: QA, lines=None, out=None) -> None:
  """Answers each line of `lines` (stdin); a question that fails prints its `error:` line and
  the loop goes on."""
  from dpr_jax import cli
  from dpr_jax.data.corpus import Question
  from dpr_jax.retrieval.retrieve import retrieve
  out = out or sys.stdout
  print("Type a question (empty line or Ctrl-D to quit).", file=out, flush=True)
  for line in (sys.stdin if lines is None else lines):
    text = line.strip()
    if not text:
      break
    try:
      p = qa(retrieve([Question(text, [])], settings))[0]
    except cli.DOMAIN_ERRORS as e:
      print(f"error: {cli.message(e)}", file=sys.stderr, flush=True)
      continue
    print(f"answer: {p['prediction']}\n  from: {p['title']} (passage {p['passage_id']}, "
          f"rank {p['passage_rank'] + 1})\n  {p['passage'][:400]}\n", file=out, flush=True)


def main(argv=None):
  from dpr_jax import cli
  from dpr_jax.retrieval import retrieve as retrieve_lib
  ap = cli.Parser("python -m dpr_jax.answer", __doc__)
  retrieve_lib.add_retrieval_args(ap)
  cli.add_questions_args(ap, required=False)
  ap.add_argument("--reader", required=True, help="reader training workdir")
  ap.add_argument("--reader_which", choices=["best", "latest"], default="best")
  ap.add_argument("--results", help="read this results JSON instead of retrieving")
  ap.add_argument("--top_k", type=cli.positive_int, default=10,
                  help="passages read per question (and retrieved)")
  ap.add_argument("--max_answer_length", type=cli.positive_int, default=10, help="tokens (DPR: 10)")
  ap.add_argument("--out", help="predictions JSON")
  ap.add_argument("--interactive", action="store_true")
  a = ap.parse_args(argv)
  if not (a.results or a.questions or a.interactive):
    raise cli.UsageError(f"{ap.prog}: expected --questions (to retrieve), --results or "
                         "--interactive, found none of them")
  # Retrieve exactly the passages the reader reads.
  settings = retrieve_lib.settings(a, a.top_k)
  if a.results:
    from dpr_jax.data.corpus import read_corpus
    from dpr_jax.reader.data import load_results
    results = load_results(a.results, read_corpus(a.passages), a.limit)
  elif not a.interactive:
    results = retrieve_lib.retrieve(retrieve_lib.read_questions(a), settings)
  qa = QA(a.reader, a.reader_which, a.top_k, a.max_answer_length)
  if a.interactive:
    return interactive(settings, qa)
  from dpr_jax.reader.train import score
  preds = qa(results)
  if a.out:
    write_json(a.out, preds)
  if any(p["answers"] for p in preds):
    s = score(preds)
    print(f"{s['count']} questions, top {a.top_k} passages read: "
          f"EM {100 * s['em']:.2f}  F1 {100 * s['f1']:.2f}")
  else:
    print(f"{len(preds)} questions answered; they have no answers, so no EM / F1 can be computed")


if __name__ == "__main__":
  from dpr_jax import cli
  sys.exit(cli.answer())
