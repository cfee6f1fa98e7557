"""Write a corpus and judged questions as a BEIR folder (`dpr_jax.data.beir`).

    python -m dpr_jax.prepare beir --passages CORPUS --questions QUESTIONS --out DIR [--split test]
    python -m dpr_jax.prepare beir --squad [--questions QAS] --out DIR
        (the SQuAD folder `prepare squad` reads, see dpr_jax.data.resources.squad_source: its
        paragraphs.tsv.gz, and its test.qas.jsonl.gz unless --questions names another file)
    python -m dpr_jax.prepare beir --demo --out DIR
        (the embedded demo slice: every paragraph; the questions of its held-out articles)

CORPUS and QUESTIONS are anything `read_corpus` and `read_questions` read. Writes
`corpus.jsonl` (every passage, ids as they are), `queries.jsonl` (each judged question: `_id`,
`text` and, where it has some, `answers`) and `qrels/SPLIT.tsv`: a question's grades where it
has them (BEIR, MS MARCO), else relevance 1 for each of its `positive_pids` (for SQuAD: the
gold paragraph). Questions without an id are refused; those with no positive are left out and
counted. Each file is written under a temporary name and renamed when complete, qrels last.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from dpr_jax.data import beir
from dpr_jax.data.corpus import Corpus, Question, read_corpus, read_questions
from dpr_jax.data.textio import DataError


def judgements(corpus: Corpus, questions: list[Question], source) -> tuple[list, list, int]:
  """-> (queries (id, text, answers), qrels rows (query id, passage id, grade), questions
  left out for having no positive). Ids must be present, unique and, for passages, in
  `corpus`."""
  known, seen = set(corpus.ids), set()
  queries, rows, unjudged = [], [], 0
  for n, q in enumerate(questions, 1):
    where = f"{source}: question {n}"
    if q.id is None or not str(q.id).strip():
      raise DataError(f"{where}: expected an 'id' (BEIR queries need one), found none")
    if q.id in seen:
      raise DataError(f"{where}: expected unique question ids, found {q.id!r} again")
    seen.add(q.id)
    grades = q.relevance if q.relevance is not None else dict.fromkeys(q.positive_pids or [], 1)
    if not any(g > 0 for g in grades.values()):
      unjudged += 1
      continue
    for pid in grades:
      if pid not in known:
        raise DataError(f"{where}: expected passage ids of {corpus.path}, found {pid!r} "
                        f"(question {q.id!r})")
    queries.append((q.id, q.question, q.answers))
    rows += [(q.id, pid, g) for pid, g in grades.items()]
  if not queries:
    raise DataError(f"{source}: expected questions with positive passages (positive_pids or "
                    "qrels), found none")
  return queries, rows, unjudged


def write(corpus: Corpus, questions: list[Question], out, split: str = "test",
          source="questions") -> dict:
  """The BEIR folder `out` from `corpus` and the judged `questions`; -> counts."""
  queries, rows, unjudged = judgements(corpus, questions, source)
  stats = beir.write_folder(out, zip(corpus.ids, corpus.titles, corpus.texts), queries,
                            {split: rows})
  return {**stats, "split": split, "questions_without_positives": unjudged,
          "corpus_from": corpus.path, "questions_from": str(source)}


def demo_inputs() -> tuple[Corpus, list[Question]]:
  """The embedded slice's corpus (every paragraph, ids from 1 in file order, as `prepare
  squad` numbers them) and the questions of its held-out articles (`slice.json`)."""
  import importlib.resources
  from dpr_jax.data import resources, squad_json
  from dpr_jax.data.textio import read_json
  parsed = squad_json.read_squad_json(resources.slice_json())
  rows, (qas,) = squad_json.corpus_and_questions([parsed])
  record = read_json(Path(str(importlib.resources.files(resources.SLICE_PACKAGE))) / "slice.json")
  held = set(record["val_articles"])
  corpus = Corpus([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                  str(resources.slice_json()))
  questions = [Question(q["question"], q["answers"], q["id"], q["positive_pids"], q["title"])
               for q in qas if q["title"] in held]
  return corpus, questions


def _inputs(a, ap) -> tuple[Corpus, list[Question], str]:
  if sum(map(bool, (a.passages, a.squad, a.demo))) != 1:
    ap.error("give one of --passages (with --questions), --squad and --demo")
  if a.demo:
    if a.questions:
      ap.error("--demo takes no --questions")
    corpus, questions = demo_inputs()
    return corpus, questions, "the demo slice's held-out questions"
  if a.squad:
    from dpr_jax.data import resources
    folder = resources.squad_dir()
    a.passages, a.questions = folder / "paragraphs.tsv.gz", a.questions or (
        folder / "test.qas.jsonl.gz")
    if not Path(a.questions).is_file():
      ap.error(f"--squad: expected {a.questions} (prepare squad --dev_json writes it), found no "
               "such file; name the questions with --questions")
  if not a.questions:
    ap.error("--passages needs --questions")
  return read_corpus(a.passages), read_questions(a.questions), str(a.questions)


def main(argv=None) -> int:
  from dpr_jax import cli
  ap = cli.Parser("python -m dpr_jax.prepare beir", __doc__)
  ap.add_argument("--out", required=True, type=Path, help="the BEIR folder to write")
  ap.add_argument("--passages", help="the corpus (any format read_corpus reads)")
  ap.add_argument("--questions", help="questions with ids and positive_pids (or qrels)")
  ap.add_argument("--squad", action="store_true",
                  help="the SQuAD folder found: paragraphs.tsv.gz (and test.qas.jsonl.gz)")
  ap.add_argument("--demo", action="store_true", help="the embedded demo slice")
  ap.add_argument("--split", default="test", help="the qrels file's name: qrels/SPLIT.tsv")
  a = ap.parse_args(argv)
  if not a.split or "/" in a.split or a.split.startswith("."):
    ap.error(f"--split: expected a file name, found {a.split!r}")
  corpus, questions, source = _inputs(a, ap)
  print(json.dumps(write(corpus, questions, a.out, a.split, source), indent=1))
  return 0


if __name__ == "__main__":
  from dpr_jax import cli
  sys.exit(cli.run(main))
