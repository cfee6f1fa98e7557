"""`prepare triples`: training triples by id (MS MARCO's qidpidtriples TSV, JSON-lines of ids)
-> DPR training records, against small hand-written files whose expected records are written
out by hand."""
import gzip
import json

import pytest

from dpr_jax import cli
from dpr_jax.data import examples, triples
from dpr_jax.tools import prepare


def _write(path, text):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text, encoding="utf-8")
  return path


def _jsonl(path, recs):
  return _write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))


CORPUS = [{"_id": "p1", "title": "Paris", "text": "Paris is the capital of France."},
          {"_id": "007", "title": "Bond", "text": ""},                    # title only
          {"_id": 7, "text": "Rome is the capital of Italy."},            # int id, no title
          {"_id": "p4", "title": "Berlin", "text": "Berlin is the capital of Germany."}]
QUERIES_TSV = "q1\tcapital of france?\nq2\tcapital of italy?\nq3\tnever used\n"
TRIPLES_TSV = ("q1\tp1\t7\n"
               "q2\t7\tp4\n"
               "\n"
               "q1\tp1\tp4\n"
               "q1\tp1\t7\n"         # a repeat: kept once
               "q2\t7\t007\n"
               "q1\tp1\tp1\n")       # the positive as its own negative: left out, counted

PARIS = {"title": "Paris", "text": "Paris is the capital of France.", "passage_id": "p1"}
ROME = {"title": "", "text": "Rome is the capital of Italy.", "passage_id": "7"}
BERLIN = {"title": "Berlin", "text": "Berlin is the capital of Germany.", "passage_id": "p4"}
BOND = {"title": "", "text": "Bond", "passage_id": "007"}   # the title as the text


@pytest.fixture
def files(tmp_path):
  return {"corpus": _jsonl(tmp_path / "corpus.jsonl", CORPUS),
          "queries": _write(tmp_path / "queries.train.tsv", QUERIES_TSV),
          "triples": _write(tmp_path / "triples.tsv", TRIPLES_TSV)}


def _argv(files, out, *more):
  return ["triples", "--triples", str(files["triples"]), "--passages", str(files["corpus"]),
          "--questions", str(files["queries"]), "--out", str(out), *more]


def _records(path):
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "rt", encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def test_tsv_triples_become_the_expected_dpr_records(files, tmp_path, capsys):
  out = tmp_path / "train.jsonl.gz"
  assert cli.run(prepare.main, _argv(files, out)) == 0
  stats = json.loads(capsys.readouterr().out)
  assert _records(out) == [
      {"id": "q1", "question": "capital of france?", "answers": [], "positive_ctxs": [PARIS],
       "negative_ctxs": [], "hard_negative_ctxs": [ROME, BERLIN]},
      {"id": "q2", "question": "capital of italy?", "answers": [], "positive_ctxs": [ROME],
       "negative_ctxs": [], "hard_negative_ctxs": [BERLIN, BOND]}]
  assert (stats["records"], stats["queries"], stats["hard_negatives"]) == (2, 2, 4)
  assert stats["negatives_that_are_positives"] == 1 and stats["title_only_passages"] == 1
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      "corpus.jsonl", "queries.train.tsv", "train.jsonl.gz", "triples.tsv"]   # no temporary


def test_rows_of_one_query_and_positive_are_merged(files, tmp_path, capsys):
  rows = [triples.Row(1, "q1", ("a",), ("n1",)), triples.Row(2, "q1", ("b",), ("n1",)),
          triples.Row(3, "q1", ("a",), ("n2", "n1")), triples.Row(4, "q2", ("a",), ()),
          triples.Row(5, "q1", ("a",), ("n3", "a"))]
  groups, dropped = triples.group(rows)
  assert [(g.qid, g.positives, g.negatives) for g in groups] == [
      ("q1", ("a",), ["n1", "n2", "n3"]), ("q1", ("b",), ["n1"]), ("q2", ("a",), [])]
  assert dropped == 1
  groups, _ = triples.group(rows, max_negatives=2)
  assert groups[0].negatives == ["n1", "n2"]
  out = tmp_path / "train.jsonl"
  assert cli.run(prepare.main, _argv(files, out, "--max_negatives", "1")) == 0
  assert [r["hard_negative_ctxs"] for r in _records(out)] == [[ROME], [BERLIN]]


def test_jsonl_ids_with_a_beir_folder(tmp_path, capsys):
  """Tevatron / sentence-transformers field names, int ids, negatives by system; a BEIR folder
  as --questions gives every query of its queries.jsonl (answers kept)."""
  d = tmp_path / "ds"
  _jsonl(d / "corpus.jsonl", CORPUS)
  _jsonl(d / "queries.jsonl", [{"_id": "q1", "text": "capital of france?", "answers": ["Paris"]},
                               {"_id": "2", "text": "capital of italy?"}])
  _write(d / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\tp1\t1\n")   # q2 unjudged
  trip = _jsonl(tmp_path / "hard.jsonl", [
      {"query_id": "q1", "positive_ids": ["p1"], "negative_ids": ["p4"]},
      {"qid": 2, "pos": [7], "neg": {"bm25": ["p4", "007"], "ce": ["p4"]}},
      {"qid": "q1", "pos": ["p1", "p4"]}])                                     # no negatives
  out = tmp_path / "train.jsonl"
  assert cli.run(prepare.main, ["triples", "--triples", str(trip), "--passages", str(d),
                                "--questions", str(d), "--out", str(out)]) == 0
  assert _records(out) == [
      {"id": "q1", "question": "capital of france?", "answers": ["Paris"],
       "positive_ctxs": [PARIS], "negative_ctxs": [], "hard_negative_ctxs": [BERLIN]},
      {"id": "2", "question": "capital of italy?", "answers": [], "positive_ctxs": [ROME],
       "negative_ctxs": [], "hard_negative_ctxs": [BERLIN, BOND]},
      {"id": "q1", "question": "capital of france?", "answers": ["Paris"],
       "positive_ctxs": [PARIS, BERLIN], "negative_ctxs": [], "hard_negative_ctxs": []}]
  assert json.loads(capsys.readouterr().out)["records_without_hard_negatives"] == 1


def test_without_triples_the_judged_positives(tmp_path, capsys):
  d = tmp_path / "ds"
  _jsonl(d / "corpus.jsonl", CORPUS)
  _jsonl(d / "queries.jsonl", [{"_id": "q1", "text": "capital of france?"},
                               {"_id": "q2", "text": "capital of italy?"}])
  _write(d / "qrels" / "train.tsv", "query-id\tcorpus-id\tscore\nq2\t7\t1\nq1\tp1\t2\n"
         "q1\tp4\t0\n")
  out = tmp_path / "train.jsonl"
  assert cli.run(prepare.main, ["triples", "--passages", str(d), "--questions",
                                str(d / "qrels" / "train.tsv"), "--out", str(out)]) == 0
  assert _records(out) == [
      {"id": "q1", "question": "capital of france?", "answers": [], "positive_ctxs": [PARIS],
       "negative_ctxs": [], "hard_negative_ctxs": []},
      {"id": "q2", "question": "capital of italy?", "answers": [], "positive_ctxs": [ROME],
       "negative_ctxs": [], "hard_negative_ctxs": []}]


def test_the_written_file_is_a_training_file(files, tmp_path, capsys):
  out = tmp_path / "train.jsonl.gz"
  assert cli.run(prepare.main, _argv(files, out)) == 0
  ds = examples.load_dataset(out, keep_negatives=8)
  assert ds.skipped_no_positive == 0
  q1, q2 = ds.examples
  assert (q1.question, q2.question) == ("capital of france?", "capital of italy?")
  assert q1.positives == (examples.Passage("Paris", "Paris is the capital of France.", "p1"),)
  assert [(p.text, p.pid) for p in q1.hard_negatives] == [
      ("Rome is the capital of Italy.", "7"), ("Berlin is the capital of Germany.", "p4")]
  assert [(p.text, p.pid) for p in q2.hard_negatives] == [
      ("Berlin is the capital of Germany.", "p4"), ("Bond", "007")]
  batches = examples.TrainBatches([ds], [1.0], global_batch=2, num_hard_negatives=2, seed=0)
  qs, ps = batches.batch(0)
  assert sorted(qs) == ["capital of france?", "capital of italy?"] and len(ps) == 6
  assert batches.filled_negatives == 0


def _err(argv, capsys):
  rc = cli.run(prepare.main, argv)
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), err
  return err[0]


@pytest.mark.parametrize("name,text,message", [
    ("triples.tsv", "q1\tp1\t7\nq1\tp1\n",
     "line 2: expected 3 tab-separated fields (query id, positive passage id, negative "
     "passage id), found 2"),
    ("triples.tsv", "q1\tp1\t\n", "line 1: expected 3 tab-separated fields (query id, positive "
     "passage id, negative passage id), found 3 with an empty one"),
    ("triples.tsv", "q1\tp1\t7\nq2\t7\tp9\n",
     "line 2: expected passage ids of {corpus}, found 'p9' (negative)"),
    ("triples.tsv", "q1\tx\t7\n", "line 1: expected passage ids of {corpus}, found 'x' "
     "(positive)"),
    ("triples.tsv", "q1\tp1\t7\nq9\t7\tp4\n",
     "line 2: expected a query id of {queries}, found 'q9'"),
    ("triples.tsv", "\n", "line 1: expected triples (query id, positive passage id, negative "
     "passage id; or JSON-lines of ids), found an empty file"),
    ("t.jsonl", '{"qid": "q1", "pos": ["p1"]}\n{"qid": "q2", "pos": ["7"]\n',
     "line 2: expected a JSON object, found malformed JSON (Expecting ',' delimiter)"),
    ("t.jsonl", '{"qid": "q1", "neg": ["p1"]}\n',
     "line 1: expected a non-empty list of passage ids 'positive_ids' or 'pos', found none"),
    ("t.jsonl", '{"pos": ["p1"]}\n',
     "line 1: expected a query id 'query_id' or 'qid' (a string or an integer), found none"),
    ("t.jsonl", '{"qid": "q1", "pos": ["p1"], "negative_ids": "7"}\n',
     "line 1: expected a list of passage ids 'negative_ids', found str"),
])
def test_bad_triples_are_one_error_line(files, tmp_path, capsys, name, text, message):
  files["triples"] = _write(tmp_path / name, text)
  out = tmp_path / "out" / "train.jsonl.gz"
  line = _err(_argv(files, out), capsys)
  expected = message.format(corpus=files["corpus"], queries=files["queries"])
  assert line == f"error: {files['triples']}: {expected}", line
  assert not (tmp_path / "out").exists()


def test_questions_without_ids_and_flag_misuse_are_refused(files, tmp_path, capsys):
  files["queries"] = _jsonl(tmp_path / "q.jsonl", [{"question": "capital of france?"}])
  assert _err(_argv(files, tmp_path / "o.jsonl"), capsys) == (
      f"error: {files['queries']}: question 1: expected an id (triples name queries by id), "
      "found none")
  assert "--max_negatives goes with --triples" in _err(
      ["triples", "--passages", str(files["corpus"]), "--questions", str(files["queries"]),
       "--out", str(tmp_path / "o.jsonl"), "--max_negatives", "2"], capsys)
  assert not (tmp_path / "o.jsonl").exists()
