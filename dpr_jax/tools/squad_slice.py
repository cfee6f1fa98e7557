"""The embedded demo slice: a few thousand paragraphs and questions of the official SQuAD v1.1
training file, in the official format, built by

    python -m dpr_jax.prepare squad-slice --train_json train-v1.1.json[.gz] --out dpr_jax/demo_data

The slice holds, taken from the file as they are (contexts, questions, answers, ids):
- the questions: `train_questions` drawn from the training articles and `val_questions` from the
  articles that `prepare squad` holds out for validation (`num_val_articles` drawn with `seed`,
  as `dpr_jax.data.squad_records.split_articles` draws them: the same held-out articles as the full
  data's), at least one from every article, so that `prepare squad` on the slice holds out
  the same articles; and every question of the file's first `whole_articles` articles;
- the paragraphs: every question's positive, its `hard_negatives` top BM25 paragraphs of the
  whole file that hold no answer (as `prepare squad` picks them), and every paragraph of the
  first `whole_articles` articles;
in file order. Deterministic given the file and the arguments. `slice.json` records the source
file (size and sha256), the arguments, the counts and the held-out articles.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from dpr_jax.data import squad_json
from dpr_jax.data.corpus import Corpus, Question
from dpr_jax.data.examples import DataError, open_text

ATTRIBUTION = """\
Stanford Question Answering Dataset (SQuAD) v1.1, Pranav Rajpurkar, Jian Zhang, Konstantin
Lopyrev and Percy Liang, "SQuAD: 100,000+ Questions for Machine Comprehension of Text",
EMNLP 2016. https://rajpurkar.github.io/SQuAD-explorer/

SQuAD is distributed under the Creative Commons Attribution-ShareAlike 4.0 International
license (CC BY-SA 4.0): https://creativecommons.org/licenses/by-sa/4.0/legalcode
Its paragraphs are taken from Wikipedia articles (CC BY-SA).

squad-slice.json.gz is an adaptation of SQuAD's training file train-v1.1.json: a selection of
its articles' paragraphs and questions, unchanged otherwise (see slice.json for what was
selected, and dpr_jax/tools/squad_slice.py for how). It is distributed under the same license,
CC BY-SA 4.0. The rest of dpr-jax is under its own license (Apache-2.0).
"""


def _draw(pool: dict[str, list[int]], n: int, rng) -> list[int]:
  """At least one question of every article of `pool` (title -> question indices), then the
  rest drawn from all of them, `n` in all (or every question when there are fewer)."""
  first = sorted(int(rng.choice(qs)) for _, qs in sorted(pool.items()))
  if n < len(first):
    raise ValueError(f"cannot draw {n} questions from {len(pool)} articles: one per article "
                     "needs at least as many")
  rest = sorted(set(i for qs in pool.values() for i in qs) - set(first))
  more = rng.choice(len(rest), min(n - len(first), len(rest)), replace=False)
  return sorted(first + [rest[int(i)] for i in more])


def _sha256(path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _raw(path):
  with open_text(path) as f:
    return json.load(f)


def select(train_json, *, seed: int = 0, num_val_articles: int = 40,
           train_questions: int = 3000, val_questions: int = 300, whole_articles: int = 2,
           hard_negatives: int = 1, depth: int = 30) -> tuple[dict, dict]:
  """-> (the slice as SQuAD JSON, its record for slice.json)."""
  from dpr_jax.retrieval.bm25 import BM25
  from dpr_jax.data.squad_records import build_records, split_articles
  parsed = squad_json.read_squad_json(train_json)   # checks the file, names bad records
  rows, (qas,) = squad_json.corpus_and_questions([parsed])
  root = _raw(train_json)
  # Paragraph `pid` (1-based, file order) -> (article, paragraph) of the raw file.
  where = [(i, j) for i, art in enumerate(root["data"]) for j in range(len(art["paragraphs"]))]
  raw_qa = {}
  for i, art in enumerate(root["data"]):
    for par in art["paragraphs"]:
      for qa in par.get("qas", []):
        raw_qa.setdefault(str(qa.get("id")), []).append(qa)
  ids = [q["id"] for q in qas]
  if len(set(ids)) != len(ids) or any(len(raw_qa.get(i, [])) != 1 for i in ids):
    raise DataError(f"{train_json}: expected unique question ids, found repeated ones")
  titles = sorted({q["title"] for q in qas})
  held = split_articles(titles, num_val_articles, seed)[0]
  whole = {root["data"][i]["title"].replace("_", " ") for i in range(whole_articles)}
  rng = np.random.default_rng(seed)
  pools = ({}, {})
  for n, q in enumerate(qas):
    if q["title"] not in whole:
      pools[q["title"] in held].setdefault(q["title"], []).append(n)
  chosen = set(_draw(pools[0], train_questions, rng)) | set(_draw(pools[1], val_questions, rng))
  chosen |= {n for n, q in enumerate(qas) if q["title"] in whole}
  chosen = sorted(chosen)
  corpus = Corpus([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
  questions = [Question(qas[n]["question"], qas[n]["answers"], qas[n]["id"],
                        qas[n]["positive_pids"], qas[n]["title"]) for n in chosen]
  records, _ = build_records(questions, corpus, BM25(corpus.titles, corpus.texts),
                             hard_negatives, depth, desc="slice")
  keep = {p for q in questions for p in q.positive_pids}
  keep |= {c["passage_id"] for r in records for c in r["hard_negative_ctxs"]}
  keep |= {pid for pid, _, title in rows if title in whole}
  keep_q = {qas[n]["id"] for n in chosen}
  data = []
  for pid in sorted(keep, key=int):
    i, j = where[int(pid) - 1]
    art = root["data"][i]
    if not data or data[-1]["title"] != art["title"]:
      data.append({"title": art["title"], "paragraphs": []})
    par = art["paragraphs"][j]
    data[-1]["paragraphs"].append({"context": par["context"], "qas": [
        qa for qa in par.get("qas", []) if str(qa.get("id")) in keep_q]})
  assert set(split_articles({q.title for q in questions}, num_val_articles, seed)[0]) == held
  path = Path(train_json)
  record = {
      "source": {"file": path.name, "bytes": path.stat().st_size, "sha256": _sha256(path)},
      "args": {"seed": seed, "num_val_articles": num_val_articles,
               "train_questions": train_questions, "val_questions": val_questions,
               "whole_articles": whole_articles, "hard_negatives": hard_negatives,
               "bm25_depth": depth},
      "articles": len(data), "paragraphs": len(keep), "questions": len(chosen),
      "val_questions": sum(q.title in held for q in questions),
      "whole_articles": sorted(whole), "val_articles": sorted(held)}
  return {"version": root.get("version", "1.1"), "data": data}, record


def write(out, squad: dict, record: dict, json_name: str) -> dict:
  """Writes the slice (`json_name`, gzip'd), slice.json and LICENSE into `out`, each under a
  temporary name renamed when complete. The gzip header carries no time stamp or name, so the
  same slice gives the same bytes."""
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  files = {json_name: gzip.compress(json.dumps(squad, ensure_ascii=False).encode(), 9, mtime=0),
           "slice.json": (json.dumps(record, indent=1, ensure_ascii=False) + "\n").encode(),
           "LICENSE": ATTRIBUTION.encode()}
  for name, data in files.items():
    (out / f"{name}.tmp").write_bytes(data)
  for name in files:
    os.replace(out / f"{name}.tmp", out / name)
  return {**record, "out": str(out), "bytes": len(files[json_name])}


def run(a, ap) -> int:
  """`python -m dpr_jax.prepare squad-slice` with the parsed arguments `a`."""
  if not a.train_json or a.dev_json or a.data_dir or a.download:
    ap.error("squad-slice takes --train_json (the official train-v1.1.json) and no "
             "--dev_json, --data_dir or --download")
  from dpr_jax.data import resources
  squad, record = select(
      a.train_json, seed=a.seed, num_val_articles=a.num_val_articles,
      train_questions=a.max_train_questions or 3000, val_questions=a.max_val_questions or 300,
      whole_articles=a.whole_articles, hard_negatives=a.num_hard_negatives or 1,
      depth=a.bm25_depth)
  print(json.dumps(write(a.out, squad, record, resources.SLICE_JSON), indent=1))
  return 0
