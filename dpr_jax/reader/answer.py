"""End-to-end open-domain QA: retrieve passages, read them, answer.

  python -m dpr_jax.answer --reader runs/reader --retriever hybrid --model minilm \\
      --embeddings emb/minilm --passages ../shared/data/squad/paragraphs.tsv.gz \\
      --questions data/squad/dev.qas.jsonl --out predictions.json [--top_k 10] [--limit 300]
  python -m dpr_jax.answer --reader runs/reader --retriever bm25 --passages ... --interactive
  # several retrievers' results files at once: their passages are read once, and EM / F1 are
  # printed for each file x k x scoring
  python -m dpr_jax.answer --reader runs/reader --passages ... --top_k 20 --report_k 1,5,10,20 \\
      --results runs/ret/bm25.json,runs/ret/dense.json,runs/ret/hybrid.json --report grid.json
  # reading comprehension: each question's gold paragraph only (a DPR training-format file)
  python -m dpr_jax.answer --reader runs/reader --gold data/squad/dev.jsonl.gz

The retrieval flags are `dpr_jax.retrieval.retrieve`'s (dense / bm25 / hybrid; `--index mesh`
searches with the embeddings sharded over all devices); `--results` reads existing results
files instead. Scorings (`--scoring`, `dpr_jax.reader.predict`): `select` (DPR: the passage the
selection head ranks first), `joint` (span + passage score across the k passages), `fused`
(joint + the retriever's standardised score). Predictions (`--out`): a JSON list of {question,
answers, prediction, title, passage_id, passage_rank, passage, start_char, end_char, span_score,
passage_score, retriever_score}, where passage[start_char:end_char] is the span read (with several results files, an object of such lists by file); EM and F1 (SQuAD
normalisation) are printed when the questions have answers. `--interactive`: type a question, get
the answer, its passage and scores.
"""
from __future__ import annotations

import sys

import jax
from flax import nnx

from dpr_jax.data.textio import write_json
from dpr_jax.reader import predict as P


class QA:
  """A loaded reader (and its compiled forward pass) that answers retrieval results."""

  def __init__(self, reader_dir, which: str = "best", top_k: int = 10,
               max_answer_length: int = 10, batch_size: int = 32, scoring: str = "select",
               fusion_weight: float = 1.0, max_length: int | None = None):
    from dpr_jax.training import sharding
    from dpr_jax.reader.train import load_reader
    model, self.tok, self.step = load_reader(reader_dir, which)
    if max_length:
      limit = model.bert.cfg.max_position_embeddings
      if max_length > limit:
        raise ValueError(f"--max_length {max_length}: expected at most the reader's "
                         f"{limit} positions")
      self.tok.max_length = max_length
    graphdef, state = nnx.split(model)
    self.mesh = sharding.make_mesh(devices=jax.local_devices())
    self.params = jax.device_put(nnx.to_pure_dict(state), sharding.replicated(self.mesh))
    self.forward = P.make_forward(graphdef)
    self.top_k, self.max_answer_length = top_k, max_answer_length
    self.batch_size, self.scoring, self.fusion_weight = batch_size, scoring, fusion_weight

  def read(self, results: list[dict], progress: bool = True,
           top_k: int | None = None) -> list[list[P.Reading]]:
    """Readings of each result's top `top_k` (default: the QA's) passages."""
    return P.read_results(self.forward, self.params, results, self.tok,
                          top_k=top_k or self.top_k,
                          batch_size=self.batch_size, max_answer_length=self.max_answer_length,
                          mesh=self.mesh, progress=progress)

  def __call__(self, results: list[dict], progress: bool = False) -> list[dict]:
    return [P.prediction(r, rd, self.top_k, self.scoring, self.fusion_weight)
            for r, rd in zip(results, self.read(results, progress))]


def _key(c: dict):
  return c["id"] if c.get("id") is not None else (c.get("title"), c["text"])


def check_same_questions(sources: dict[str, list[dict]]) -> None:
  """Several results files must hold the same questions in the same order."""
  names = list(sources)
  first = sources[names[0]]
  for name in names[1:]:
    rows = sources[name]
    if len(rows) != len(first):
      raise ValueError(f"{name}: expected the {len(first)} questions of {names[0]}, "
                       f"found {len(rows)}")
    for i, (a, b) in enumerate(zip(first, rows)):
      if a["question"] != b["question"]:
        raise ValueError(f"{name}: record {i}: expected the question {a['question'][:60]!r} "
                         f"of {names[0]}, found {b['question'][:60]!r}")


def read_sources(qa: QA, sources: dict[str, list[dict]]) -> dict[str, list[list[P.Reading]]]:
  """Several results files on the same questions -> each one's readings; a (question, passage)
  pair that several files retrieved is read once."""
  names = list(sources)
  first = sources[names[0]]
  check_same_questions(sources)
  union = []
  for i in range(len(first)):
    ctxs = {}
    for name in names:
      for c in sources[name][i]["ctxs"][: qa.top_k]:
        ctxs.setdefault(_key(c), c)
    union.append({"question": first[i]["question"], "ctxs": list(ctxs.values())})
  read_union = qa.read(union, top_k=max(len(u["ctxs"]) for u in union))
  by_key = [dict(zip(map(_key, u["ctxs"]), rd)) for u, rd in zip(union, read_union)]
  return {name: [[by_key[i][_key(c)] for c in row["ctxs"][: qa.top_k]]
                 for i, row in enumerate(sources[name])] for name in names}


def grid(sources: dict, readings: dict, ks, scorings, fusion_weight: float) -> list[dict]:
  """EM / F1 of every results file x k x scoring (`fused` only where every passage has a
  retriever score)."""
  rows = []
  for name, results in sources.items():
    scored = all(P.retriever_scores(r) is not None for r in results)
    for k in ks:
      for sc in (s for s in scorings if scored or s != "fused"):
        preds = [P.prediction(r, rd, k, sc, fusion_weight)
                 for r, rd in zip(results, readings[name])]
        s = P.score(preds)
        rows.append({"results": name, "k": k, "scoring": sc, "em": 100 * s["em"],
                     "f1": 100 * s["f1"], "questions": s["count"]})
  return rows


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
    rs = "" if p["retriever_score"] is None else f", retriever {p['retriever_score']:.2f}"
    print(f"answer: {p['prediction']}\n  from: {p['title']} (passage {p['passage_id']}, "
          f"rank {p['passage_rank'] + 1}; span {p['span_score']:.2f}, passage "
          f"{p['passage_score']:.2f}{rs})\n  {p['passage'][:400]}\n", file=out, flush=True)


def _sources(a, settings) -> dict[str, list[dict]]:
  """The results to read, by name: --results files, --gold paragraphs, or live retrieval."""
  from dpr_jax.data.corpus import read_corpus
  from dpr_jax.retrieval import retrieve as retrieve_lib
  if a.gold:
    from dpr_jax.data import examples
    from dpr_jax.reader.train import gold_rows
    return _sampled({a.gold: gold_rows(examples.load_dataset(a.gold, 0, a.limit))}, a.sample)
  if a.results:
    from dpr_jax.reader.data import load_results
    corpus = read_corpus(a.passages) if a.passages else None
    return _sampled({f: load_results(f, corpus, a.limit) for f in a.results.split(",") if f},
                    a.sample)
  return {"retrieved": retrieve_lib.retrieve(retrieve_lib.read_questions(a), settings)}


def _sampled(sources: dict[str, list[dict]], n: int | None) -> dict[str, list[dict]]:
  """`--sample N`: the same N questions (seed 0, file order) of every source, as `retrieve`
  samples questions."""
  import numpy as np
  check_same_questions(sources)
  size = len(next(iter(sources.values())))
  if not n or n >= size:
    return sources
  keep = np.sort(np.random.default_rng(0).choice(size, n, replace=False))
  return {name: [rows[i] for i in keep] for name, rows in sources.items()}


def _parser():
  from dpr_jax import cli
  from dpr_jax.retrieval import retrieve as retrieve_lib
  ap = cli.Parser("python -m dpr_jax.answer", __doc__)
  retrieve_lib.add_retrieval_args(ap, passages_required=False)
  cli.add_questions_args(ap, required=False)
  g = ap.add_argument_group("reader")
  g.add_argument("--reader", required=True, help="reader training workdir")
  g.add_argument("--reader_which", choices=["best", "latest"], default="best")
  g.add_argument("--results", help="read these results JSON files (comma-separated) instead "
                 "of retrieving; they must hold the same questions in the same order")
  g.add_argument("--gold", help="read each question's gold paragraph only: a DPR training-format "
                 "file (positive_ctxs)")
  g.add_argument("--top_k", type=cli.positive_int, default=10,
                 help="passages read per question (and retrieved)")
  g.add_argument("--scoring", choices=P.SCORINGS, default="select",
                 help="how the answer is chosen among the passages read")
  g.add_argument("--fusion_weight", type=float, default=1.0, help="for --scoring fused")
  g.add_argument("--report_k", help="comma-separated k <= top_k: print EM / F1 of every results "
                 "file x k x scoring")
  g.add_argument("--report", help="write that table as JSON")
  g.add_argument("--max_answer_length", type=cli.positive_int, default=10, help="tokens (DPR: 10)")
  g.add_argument("--max_length", type=cli.positive_int, default=None,
                 help="reader input tokens (default: the length the reader trained with)")
  g.add_argument("--batch_size", type=cli.positive_int, default=32, help="passages per forward")
  g.add_argument("--out", help="predictions JSON")
  g.add_argument("--interactive", action="store_true")
  return ap


def _print_scores(preds: dict[str, list[dict]], read: str) -> None:
  for name, pp in preds.items():
    if any(p["answers"] for p in pp):
      s = P.score(pp)
      print(f"{name}: {s['count']} questions, {read}: "
            f"EM {100 * s['em']:.2f}  F1 {100 * s['f1']:.2f}")
    else:
      print(f"{name}: {len(pp)} questions answered; they have no answers, so no EM / F1 can "
            "be computed")


def main(argv=None):
  from dpr_jax import cli
  from dpr_jax.retrieval import retrieve as retrieve_lib
  ap = _parser()
  a = ap.parse_args(argv)
  if not (a.results or a.gold or a.questions or a.interactive):
    raise cli.UsageError(f"{ap.prog}: expected --questions (to retrieve), --results, --gold or "
                         "--interactive, found none of them")
  if not (a.passages or a.gold):
    raise cli.UsageError(f"{ap.prog}: expected --passages (the corpus), found none")
  ks = [int(k) for k in a.report_k.split(",")] if a.report_k else []
  if any(k < 1 or k > a.top_k for k in ks):
    raise cli.UsageError(f"{ap.prog}: --report_k values must be in 1..--top_k ({a.top_k}), "
                         f"found {a.report_k}")
  # Retrieve exactly the passages the reader reads.
  settings = retrieve_lib.settings(a, a.top_k)
  sources = None if a.interactive else _sources(a, settings)
  if sources:
    check_same_questions(sources)
  qa = QA(a.reader, a.reader_which, a.top_k, a.max_answer_length, a.batch_size, a.scoring,
          a.fusion_weight, a.max_length)
  if a.interactive:
    return interactive(settings, qa)
  readings = read_sources(qa, sources)
  preds = {name: [P.prediction(r, rd, a.top_k, a.scoring, a.fusion_weight)
                  for r, rd in zip(rows, readings[name])] for name, rows in sources.items()}
  if a.out:
    write_json(a.out, next(iter(preds.values())) if len(preds) == 1 else preds)
  _print_scores(preds, "gold paragraph read" if a.gold else
                f"top {a.top_k} passages read ({a.scoring})")
  if ks:
    table = grid(sources, readings, ks, P.SCORINGS, a.fusion_weight)
    for r in table:
      print(f"{r['results']}\tk={r['k']}\t{r['scoring']}\tEM {r['em']:.2f}\tF1 {r['f1']:.2f}")
    if a.report:
      write_json(a.report, {"reader": a.reader, "top_k": a.top_k, "rows": table})


if __name__ == "__main__":
  from dpr_jax import cli
  sys.exit(cli.answer())
