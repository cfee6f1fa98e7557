"""The official SQuAD v1.1 JSON files as a retrieval corpus and question files.

`data[].paragraphs[]` become passages in DPR's `id<TAB>text<TAB>title` layout: every paragraph
of the given files in file order (train first, then dev), integer ids from 1, whitespace runs in
the text collapsed to one space (so no tab or newline reaches the TSV), `_` in the article title
read as a space. A question's `positive_pids` are the ids of every passage whose text equals its
paragraph's (a paragraph repeated in an article gives two positives); its answers are the
distinct answer texts in file order.
"""
from __future__ import annotations

import csv
import dataclasses
import gzip
import json
from pathlib import Path

from dpr_jax.data.examples import DataError, open_text


@dataclasses.dataclass
class SquadParagraph:
  title: str
  text: str
  qas: list[dict]  # {id, question, answers}


@dataclasses.dataclass
class SquadFile:
  path: str
  paragraphs: list[SquadParagraph]
  num_articles: int
  skipped_no_answer: int  # questions without an answer (SQuAD 2.0 style), left out


def _expect(cond: bool, path, where: str, expected: str, found) -> None:
  if not cond:
    raise DataError(f"{path}: {where}: expected {expected}, found {str(found)[:80]!r}")


def _read_qa(path, where: str, qa) -> dict | None:
  _expect(isinstance(qa, dict) and isinstance(qa.get("question"), str)
          and qa["question"].strip(), path, where, "an object with a non-empty 'question'", qa)
  answers = qa.get("answers")
  _expect(isinstance(answers, list) and all(isinstance(a, dict) and isinstance(a.get("text"), str)
                                            for a in answers),
          path, where, "'answers' as a list of objects with a string 'text'", answers)
  texts = list(dict.fromkeys(a["text"] for a in answers if a["text"].strip()))
  if not texts:
    return None
  return {"id": str(qa.get("id", where)), "question": qa["question"], "answers": texts}


def read_squad_json(path) -> SquadFile:
  """Parses and checks a SQuAD JSON file (`.gz` accepted). A malformed record is a DataError
  naming the file and the record (`data[i].paragraphs[j].qas[k]`)."""
  with open_text(path) as f:
    try:
      root = json.load(f)
    except json.JSONDecodeError as e:
      raise DataError(f"{path}: line {e.lineno}: malformed JSON ({e.msg})") from e
  _expect(isinstance(root, dict) and isinstance(root.get("data"), list), path, "top level",
          "an object with a 'data' list (SQuAD JSON)", type(root).__name__)
  paragraphs, skipped = [], 0
  for i, art in enumerate(root["data"]):
    _expect(isinstance(art, dict) and isinstance(art.get("title"), str)
            and isinstance(art.get("paragraphs"), list), path, f"data[{i}]",
            "an article with a string 'title' and a 'paragraphs' list", art)
    title = art["title"].replace("_", " ")
    for j, par in enumerate(art["paragraphs"]):
      where = f"data[{i}].paragraphs[{j}]"
      _expect(isinstance(par, dict) and isinstance(par.get("context"), str)
              and par["context"].strip(), path, where, "a non-empty string 'context'", par)
      _expect(isinstance(par.get("qas", []), list), path, where, "a 'qas' list", par.get("qas"))
      qas = []
      for k, qa in enumerate(par.get("qas", [])):
        rec = _read_qa(path, f"{where}.qas[{k}]", qa)
        skipped += rec is None
        if rec is not None:
          qas.append(rec)
      paragraphs.append(SquadParagraph(title, " ".join(par["context"].split()), qas))
  return SquadFile(str(path), paragraphs, len(root["data"]), skipped)


def corpus_and_questions(files: list[SquadFile]) -> tuple[list[tuple[str, str, str]],
                                                          list[list[dict]]]:
  """Passage rows `(id, text, title)` of all `files`, and each file's question records
  `{id, question, answers, title, positive_pids}`."""
  rows, ids_of_text = [], {}
  for f in files:
    for p in f.paragraphs:
      pid = str(len(rows) + 1)
      rows.append((pid, p.text, p.title))
      ids_of_text.setdefault(p.text, []).append(pid)
  questions = []
  for f in files:
    questions.append([{**qa, "title": p.title, "positive_pids": ids_of_text[p.text]}
                      for p in f.paragraphs for qa in p.qas])
  return rows, questions


def write_corpus(path: Path, rows, gzipped: bool) -> None:
  """DPR's passage TSV (header `id text title`; csv quoting, as `psgs_w100.tsv`)."""
  opener = gzip.open if gzipped else open
  with opener(path, "wt", encoding="utf-8", newline="") as f:
    w = csv.writer(f, delimiter="\t", lineterminator="\n")
    w.writerow(["id", "text", "title"])
    w.writerows(rows)
