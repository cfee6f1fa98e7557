"""`prepare squad` on the real shared data (small slices)."""
import gzip
import json

from dpr_jax.data import answers
from dpr_jax.tools.prepare import prepare_squad


def _read(path):
  with gzip.open(path, "rt") as f:
    return [json.loads(l) for l in f]


def test_prepare_squad_split_by_article_and_hard_negatives(squad_dir, tmp_path):
  stats = prepare_squad(tmp_path / "a", squad_dir=squad_dir, seed=1, num_val_articles=5,
                        num_hard_negatives=2, max_train_questions=300, max_val_questions=60)
  train, dev = _read(tmp_path / "a" / "train.jsonl.gz"), _read(tmp_path / "a" / "dev.jsonl.gz")
  assert len(train) == 300 and len(dev) == 60 and len(stats["val_articles"]) == 5
  val_titles = set(stats["val_articles"])
  assert all(r["positive_ctxs"][0]["title"] in val_titles for r in dev)
  assert not any(r["positive_ctxs"][0]["title"] in val_titles for r in train)
  for r in train + dev:
    assert answers.has_answer(r["answers"], r["positive_ctxs"][0]["text"])
    for h in r["hard_negative_ctxs"]:
      assert not answers.has_answer(r["answers"], h["text"])
      assert h["passage_id"] not in {p["passage_id"] for p in r["positive_ctxs"]}
  assert sum(len(r["hard_negative_ctxs"]) == 2 for r in train) >= 290
  qas = [json.loads(l) for l in open(tmp_path / "a" / "dev.qas.jsonl")]
  assert [q["question"] for q in qas] == [r["question"] for r in dev]
  # Deterministic given the seed.
  prepare_squad(tmp_path / "b", squad_dir=squad_dir, seed=1, num_val_articles=5,
                num_hard_negatives=2, max_train_questions=300, max_val_questions=60)
  assert _read(tmp_path / "b" / "train.jsonl.gz") == train


def test_two_held_out_splits_are_disjoint_and_excluded_from_training(squad_dir, tmp_path):
  """Split 0 is the one `val_splits=1` draws; split 1 is another 3 articles; no training
  question comes from either, and `train-split.qas.jsonl.gz` lists the training questions."""
  one = prepare_squad(tmp_path / "one", squad_dir=squad_dir, seed=3, num_val_articles=3,
                      num_hard_negatives=1, max_train_questions=200)
  two = prepare_squad(tmp_path / "two", squad_dir=squad_dir, seed=3, num_val_articles=3,
                      num_hard_negatives=1, max_train_questions=200, val_splits=2)
  assert two["val_articles"] == one["val_articles"] and len(two["dev2_articles"]) == 3
  assert _read(tmp_path / "two" / "dev.jsonl.gz") == _read(tmp_path / "one" / "dev.jsonl.gz")
  assert ((tmp_path / "two" / "dev.qas.jsonl").read_text()
          == (tmp_path / "one" / "dev.qas.jsonl").read_text())
  assert not set(two["val_articles"]) & set(two["dev2_articles"])
  qas = {q["id"]: q["title"] for q in _read(squad_dir / "train.qas.jsonl.gz")}
  dev2 = [json.loads(l) for l in open(tmp_path / "two" / "dev2.qas.jsonl")]
  assert {qas[q["id"]] for q in dev2} == set(two["dev2_articles"])
  assert len(dev2) == sum(t in two["dev2_articles"] for t in qas.values())
  train = _read(tmp_path / "two" / "train.jsonl.gz")
  held = set(two["val_articles"]) | set(two["dev2_articles"])
  assert len(train) == 200 and not any(qas[r["id"]] in held for r in train)
  split_qas = _read(tmp_path / "two" / "train-split.qas.jsonl.gz")
  assert [q["id"] for q in split_qas] == [r["id"] for r in train]
  assert all(q["positive_pids"] == [r["positive_ctxs"][0]["passage_id"]]
             for q, r in zip(split_qas, train))


# --- the official SQuAD JSON files -------------------------------------------------------------

import collections
import os

import pytest

from dpr_jax.data.corpus import read_corpus, read_questions
from dpr_jax.data.examples import DataError
from dpr_jax.tools import prepare


def _raw_tsv(path):
  """The shared corpus, split on tabs (it is written without csv quoting)."""
  with gzip.open(path, "rt", encoding="utf-8") as f:
    rows = [l.rstrip("\n").split("\t") for l in f]
  assert rows[0] == ["id", "text", "title"]
  return rows[1:]


def _read_json_directly(path):
  """The (title, text) rows and (id, question, answers, title, positive text) of a SQuAD JSON
  file, read with json alone: a second reading of the format docs/data.md describes."""
  with gzip.open(path, "rt", encoding="utf-8") as f:
    data = json.load(f)["data"]
  rows, qs = [], []
  for art in data:
    title = art["title"].replace("_", " ")
    for par in art["paragraphs"]:
      text = " ".join(par["context"].split())
      rows.append((title, text))
      for qa in par["qas"]:
        answers = list(dict.fromkeys(a["text"] for a in qa["answers"] if a["text"].strip()))
        qs.append((qa["id"], qa["question"], answers, title, text))
  return rows, qs


def test_official_train_json_gives_the_shared_paragraphs_and_questions(squad_dir, tmp_path):
  """Built from `train-v1.1.json.gz` alone (the full file, or the embedded slice when the shared
  folder is absent). Against a direct reading of the JSON: the same (title, text) rows in file
  order, ids 1..N; the same questions in order, each with one positive or more, all holding its
  paragraph's text. On the full file, also against the shared derived files (rebuilt from the
  SQuAD explorer's pages): the multiset of (title, text) equals that of the shared corpus's rows
  whose title is a training article (all 442); the questions have the same ids in the same
  order, the same question, answers and title; and each question's positives have the same
  texts (ids differ: ours number paragraphs in file order)."""
  stats = prepare.build_squad_corpus(tmp_path, squad_dir / "train-v1.1.json.gz")
  ours = read_corpus(tmp_path / "paragraphs.tsv.gz")
  our_q = read_questions(tmp_path / "train.qas.jsonl.gz")
  rows, qs = _read_json_directly(squad_dir / "train-v1.1.json.gz")
  assert list(zip(ours.titles, ours.texts)) == rows and stats["passages"] == len(rows)
  assert ours.ids == [str(i) for i in range(1, len(rows) + 1)]
  our_text = dict(zip(ours.ids, ours.texts))
  assert [(q.id, q.question, q.answers, q.title) for q in our_q] == [x[:4] for x in qs]
  assert all(q.positive_pids and {our_text[p] for p in q.positive_pids} == {x[4]}
             for q, x in zip(our_q, qs))
  if len(rows) != 18896:   # the embedded slice: no derived files to compare with
    assert stats["train"]["articles"] == 442 and len(our_q) == len(qs) > 4000
    return
  assert stats["train"]["articles"] == 442
  shared = _raw_tsv(squad_dir / "paragraphs.tsv.gz")
  titles = set(ours.titles)
  assert len(titles) == 442
  assert (collections.Counter(zip(ours.titles, ours.texts))
          == collections.Counter((r[2], r[1]) for r in shared if r[2] in titles))
  shared_text = {r[0]: r[1] for r in shared}
  shared_q = read_questions(squad_dir / "train.qas.jsonl.gz")
  assert len(our_q) == len(shared_q) == 87599
  for a, b in zip(our_q, shared_q):
    assert (a.id, a.question, a.answers, a.title) == (b.id, b.question, b.answers, b.title)
    assert (sorted(our_text[p] for p in a.positive_pids)
            == sorted(shared_text[p] for p in b.positive_pids))
  assert sum(len(q.positive_pids) == 2 for q in our_q) == 40  # repeated paragraphs


def _squad(articles):
  return {"version": "1.1", "data": [
      {"title": t, "paragraphs": [{"context": c, "qas": [
          {"id": qid, "question": q, "answers": [{"answer_start": 0, "text": a} for a in ans]}
          for qid, q, ans in qas]} for c, qas in pars]} for t, pars in articles]}


def _write(path, obj):
  path.write_text(json.dumps(obj))
  return path


def test_train_and_dev_json_hand_worked(tmp_path):
  train = _write(tmp_path / "train.json", _squad([
      ("Tab_Town", [("Tabs\there and\nnewlines  too.", [("t1", "Where?", ["here"])]),
                    ('"Quoted" start, "inner" quote.', [("t2", "What?", ["inner"])])]),
      ("Echo", [("Same text.", [("t3", "Same?", ["Same"])]),
                ("Same text.", [("t4", "Again?", ["text"])])])]))
  dev = _write(tmp_path / "dev.json", _squad([
      ("Dev_Article", [("Dev paragraph one.", [("d1", "Dev q?", ["one", "one", "paragraph one"]),
                                               ("d2", "No answer?", [])])])]))
  out = tmp_path / "out"
  stats = prepare.build_squad_corpus(out, train, dev)
  assert stats["test"] == {"file": str(dev), "articles": 1, "paragraphs": 1, "questions": 1,
                           "skipped_no_answer": 1}
  corpus = read_corpus(out / "paragraphs.tsv.gz")
  assert list(zip(corpus.ids, corpus.texts, corpus.titles)) == [
      ("1", "Tabs here and newlines too.", "Tab Town"),
      ("2", '"Quoted" start, "inner" quote.', "Tab Town"),
      ("3", "Same text.", "Echo"), ("4", "Same text.", "Echo"),
      ("5", "Dev paragraph one.", "Dev Article")]
  with gzip.open(out / "paragraphs.tsv.gz", "rt") as f:
    assert f.read().splitlines()[2] == '2\t"""Quoted"" start, ""inner"" quote."\tTab Town'
  assert _read(out / "train.qas.jsonl.gz") == [
      {"id": "t1", "question": "Where?", "answers": ["here"], "title": "Tab Town",
       "positive_pids": ["1"]},
      {"id": "t2", "question": "What?", "answers": ["inner"], "title": "Tab Town",
       "positive_pids": ["2"]},
      {"id": "t3", "question": "Same?", "answers": ["Same"], "title": "Echo",
       "positive_pids": ["3", "4"]},
      {"id": "t4", "question": "Again?", "answers": ["text"], "title": "Echo",
       "positive_pids": ["3", "4"]}]
  assert _read(out / "test.qas.jsonl.gz") == [
      {"id": "d1", "question": "Dev q?", "answers": ["one", "paragraph one"],
       "title": "Dev Article", "positive_pids": ["5"]}]


def test_bad_json_is_one_line_naming_the_record_and_writes_nothing(tmp_path, capsys):
  good = _write(tmp_path / "train.json", _squad([("A", [("Text a.", [("a", "Q?", ["a"])])])]))
  bad = _squad([("B", [("Text b.", [("b", "Q?", ["b"])]), ("Text c.", [])])])
  bad["data"][0]["paragraphs"][1]["qas"] = [{"id": "c", "question": "Q?", "answers": "c"}]
  bad = _write(tmp_path / "dev.json", bad)
  with pytest.raises(DataError, match=r"dev\.json: data\[0\]\.paragraphs\[1\]\.qas\[0\]: "
                     r"expected 'answers' as a list"):
    prepare.build_squad_corpus(tmp_path / "x", good, bad)
  from dpr_jax import cli
  rc = cli.prepare(["squad", "--train_json", str(good), "--dev_json", str(bad),
                    "--out", str(tmp_path / "out")])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1 and err[0].startswith("error: ")
  assert "data[0].paragraphs[1].qas[0]" in err[0]
  assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")
  _write(tmp_path / "trunc.json", {}).write_text('{"data": [')
  with pytest.raises(DataError, match=r"trunc\.json: line 1: malformed JSON"):
    prepare.build_squad_corpus(tmp_path / "y", tmp_path / "trunc.json")


def test_demo_runs_from_a_slice_of_the_official_json_without_shared(squad_dir, tmp_path,
                                                                    monkeypatch):
  """A few articles of the official train JSON (one stands in for dev), `prepare squad` into
  ./data/squad, then the demo config's data step, with $DPR_DATA_DIR an empty folder."""
  from dpr_jax.configs import demo
  from dpr_jax.data import examples, resources
  from dpr_jax.training import loop
  with gzip.open(squad_dir / "train-v1.1.json.gz", "rt") as f:
    articles = json.load(f)["data"][:7]
  _write(tmp_path / "train.json", {"version": "1.1", "data": articles[:6]})
  _write(tmp_path / "dev.json", {"version": "1.1", "data": articles[6:]})
  (tmp_path / "empty").mkdir()
  monkeypatch.setenv(resources.DATA_ENV, str(tmp_path / "empty"))
  monkeypatch.chdir(tmp_path)
  assert prepare.main(["squad", "--train_json", "train.json", "--dev_json", "dev.json",
                       "--out", "data/squad", "--num_val_articles", "1",
                       "--num_hard_negatives", "1"]) == 0
  assert resources.squad_dir() == tmp_path / "data" / "squad"
  dev_qas = _read(tmp_path / "data" / "squad" / "test.qas.jsonl.gz")
  assert len(dev_qas) == sum(len(p["qas"]) for p in articles[6]["paragraphs"])

  c = demo.get_config()
  c.data.prepare_args.num_val_articles = 1
  train_files, dev_file = loop.prepared_files(c.data, tmp_path / "work")
  train = examples.load_dataset(train_files[0])
  dev = examples.load_dataset(dev_file)
  n_questions = sum(len(p["qas"]) for a in articles[:6] for p in a["paragraphs"])
  assert len(train.examples) + len(dev.examples) == n_questions
  corpus = read_corpus(tmp_path / "data" / "squad" / "paragraphs.tsv.gz")
  assert len(corpus) == sum(len(a["paragraphs"]) for a in articles)
  texts = dict(zip(corpus.ids, corpus.texts))
  for ex in train.examples[:50] + dev.examples[:50]:
    assert answers.has_answer(ex.answers, texts[ex.positives[0].pid])
  questions, passages, positive = examples.validation_set(dev.examples)
  assert len(questions) == len(dev.examples) and len(positive) == len(questions)
