"""Turn the shared SQuAD data into DPR retriever training files.

    python -m dpr_jax.prepare squad --out DIR [--seed 0] [--num_val_articles 40]

Writes, in DIR:
- `train.jsonl.gz`, `dev.jsonl.gz`: DPR training format. The positive is the paragraph holding
  the answer; hard negatives are the top BM25 paragraphs (bm25s, k1 0.9, b 0.4) that contain no
  answer (DPR's recipe).
- `dev.qas.jsonl`: the validation questions for retrieval evaluation (`id, question, answers,
  title, positive_pids`).
- `split.json`: the held-out articles, the seed and the counts.
Validation is split by article: no validation paragraph is a training positive. Deterministic
given the seed.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dpr_jax.data import answers as answer_lib
from dpr_jax.data import resources
from dpr_jax.data.textio import atomic_write, write_json
from dpr_jax.retrieval.bm25 import BM25
from dpr_jax.data.corpus import read_corpus, read_questions


def split_articles(titles, num_val: int, seed: int) -> set[str]:
  """`num_val` article titles, drawn by seed from the sorted distinct titles."""
  distinct = sorted(set(titles))
  if num_val >= len(distinct):
    raise ValueError(f"cannot hold out {num_val} of {len(distinct)} articles")
  rng = np.random.default_rng(seed)
  return {distinct[i] for i in rng.choice(len(distinct), num_val, replace=False)}


def _ctx(corpus, row: int) -> dict:
  return {"title": corpus.titles[row], "text": corpus.texts[row], "passage_id": corpus.ids[row]}


def build_records(questions, corpus, bm25: BM25, num_hard_negatives: int, depth: int,
                  desc: str = "") -> tuple[list[dict], int]:
  """DPR records for `questions`; returns them and how many lacked enough hard negatives."""
  row_of = {pid: i for i, pid in enumerate(corpus.ids)}
  top, _ = bm25.search([q.question for q in questions], k=depth)
  records, short = [], 0
  token_cache: dict[int, list[str]] = {}
  for q, rows in zip(tqdm(questions, desc=desc, unit="q", mininterval=2), top):
    positives = [row_of[p] for p in q.positive_pids]
    hard = []
    for r in rows:
      r = int(r)
      if r in positives:
        continue
      if r not in token_cache:
        token_cache[r] = answer_lib.tokens(corpus.texts[r])
      if answer_lib.has_answer_tokens(q.answers, token_cache[r]):
        continue
      hard.append(r)
      if len(hard) == num_hard_negatives:
        break
    short += len(hard) < num_hard_negatives
    records.append({"id": q.id, "question": q.question, "answers": q.answers,
                    "positive_ctxs": [_ctx(corpus, r) for r in positives], "negative_ctxs": [],
                    "hard_negative_ctxs": [_ctx(corpus, r) for r in hard]})
  return records, short


def _write_jsonl_gz(path: Path, records):
  with atomic_write(path) as f:
    for r in records:
      f.write(json.dumps(r, ensure_ascii=False) + "\n")


def prepare_squad(out: Path, *, squad_dir: Path | None = None, seed: int = 0,
                  num_val_articles: int = 40, num_hard_negatives: int = 3, depth: int = 30,
                  max_train_questions: int | None = None,
                  max_val_questions: int | None = None) -> dict:
  squad_dir = Path(squad_dir or resources.squad_dir())
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  corpus = read_corpus(squad_dir / "paragraphs.tsv.gz")
  qas = read_questions(squad_dir / "train.qas.jsonl.gz")
  titles = {q.id: q.title for q in qas}
  val_articles = split_articles(titles.values(), num_val_articles, seed)
  train_q = [q for q in qas if titles[q.id] not in val_articles]
  val_q = [q for q in qas if titles[q.id] in val_articles]
  rng = np.random.default_rng(seed + 1)
  if max_train_questions and max_train_questions < len(train_q):
    train_q = [train_q[i] for i in sorted(rng.choice(len(train_q), max_train_questions, replace=False))]
  if max_val_questions and max_val_questions < len(val_q):
    val_q = [val_q[i] for i in sorted(rng.choice(len(val_q), max_val_questions, replace=False))]
  bm25 = BM25(corpus.titles, corpus.texts)
  stats = {"seed": seed, "val_articles": sorted(val_articles), "corpus": str(squad_dir),
           "num_hard_negatives": num_hard_negatives, "bm25_depth": depth}
  for name, qs in (("train", train_q), ("dev", val_q)):
    recs, short = build_records(qs, corpus, bm25, num_hard_negatives, depth, desc=name)
    _write_jsonl_gz(out / f"{name}.jsonl.gz", recs)
    stats[f"{name}_questions"] = len(recs)
    stats[f"{name}_short_of_hard_negatives"] = short
  with atomic_write(out / "dev.qas.jsonl") as f:
    for q in val_q:
      f.write(json.dumps({"id": q.id, "question": q.question, "answers": q.answers,
                          "title": titles[q.id], "positive_pids": q.positive_pids},
                         ensure_ascii=False) + "\n")
  write_json(out / "split.json", stats)
  return stats


def main(argv=None):
  from dpr_jax import cli
  ap = cli.Parser("python -m dpr_jax.prepare", __doc__)
  ap.add_argument("dataset", choices=["squad"])
  ap.add_argument("--out", required=True, type=Path, help="output directory")
  ap.add_argument("--data_dir", type=Path, default=None,
                  help=f"folder holding paragraphs.tsv.gz etc. (default ${resources.DATA_ENV}/squad)")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--num_val_articles", type=cli.positive_int, default=40)
  ap.add_argument("--num_hard_negatives", type=cli.positive_int, default=3)
  ap.add_argument("--bm25_depth", type=cli.positive_int, default=30, help="BM25 ranks searched for negatives")
  ap.add_argument("--max_train_questions", type=cli.positive_int, default=None)
  ap.add_argument("--max_val_questions", type=cli.positive_int, default=None)
  a = ap.parse_args(argv)
  stats = prepare_squad(a.out, squad_dir=a.data_dir, seed=a.seed,
                        num_val_articles=a.num_val_articles,
                        num_hard_negatives=a.num_hard_negatives, depth=a.bm25_depth,
                        max_train_questions=a.max_train_questions,
                        max_val_questions=a.max_val_questions)
  print(json.dumps({k: v for k, v in stats.items() if k != "val_articles"}, indent=1))


if __name__ == "__main__":
  from dpr_jax import cli
  sys.exit(cli.prepare())
