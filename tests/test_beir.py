"""BEIR folders and MS MARCO TSVs: the readers, `prepare beir`, and BM25 retrieval over them,
against small hand-written files whose expected contents are worked out by hand."""
import json

import pytest

from dpr_jax import cli
from dpr_jax.data import beir
from dpr_jax.data.corpus import read_corpus, read_questions
from dpr_jax.tools import prepare


def _write(path, text):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text, encoding="utf-8")
  return path


def _jsonl(path, recs):
  return _write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))


CORPUS = [{"_id": "doc-α", "title": "Paris", "text": "Paris is the capital of France."},
          {"_id": 7, "text": "Rome is the capital of Italy."},            # int id, no title
          {"_id": "007", "title": "Bond", "text": ""},                     # title only
          {"_id": "d4", "title": "", "text": "Berlin is the capital of Germany."}]
QUERIES = [{"_id": "q2", "text": "capital of italy?", "metadata": {}},
           {"_id": "q1", "text": "capital of france?"},
           {"_id": "q3", "text": "who is bond?"},
           {"_id": "q9", "text": "never judged"}]
QRELS_TEST = "query-id\tcorpus-id\tscore\nq1\tdoc-α\t2\nq1\td4\t0\nq2\t7\t1\n"
QRELS_DEV = "query-id\tcorpus-id\tscore\nq3\t007\t1\n"


@pytest.fixture
def folder(tmp_path):
  d = tmp_path / "ds"
  _jsonl(d / "corpus.jsonl", CORPUS)
  _jsonl(d / "queries.jsonl", QUERIES)
  _write(d / "qrels" / "test.tsv", QRELS_TEST)
  _write(d / "qrels" / "dev.tsv", QRELS_DEV)
  return d


def test_beir_folder_corpus_keeps_string_ids(folder):
  c = read_corpus(folder)
  assert c.ids == ["doc-α", "7", "007", "d4"]          # "007" is not 7
  assert c.titles == ["Paris", "", "Bond", ""]
  assert c.texts[1] == "Rome is the capital of Italy." and c.path == str(folder)
  assert read_corpus(folder / "corpus.jsonl", limit=2).ids == ["doc-α", "7"]


def test_beir_questions_are_the_judged_queries_in_file_order(folder):
  qs = read_questions(folder)                    # split test by default
  assert [(q.id, q.question) for q in qs] == [("q2", "capital of italy?"),
                                              ("q1", "capital of france?")]
  assert [q.positive_pids for q in qs] == [["7"], ["doc-α"]]    # grade 0 is not a positive
  assert [q.relevance for q in qs] == [{"7": 1}, {"doc-α": 2, "d4": 0}]
  dev = read_questions(folder / "qrels" / "dev.tsv")
  assert [(q.id, q.positive_pids) for q in dev] == [("q3", ["007"])]
  assert beir.qrels_path(folder, "dev") == folder / "qrels" / "dev.tsv"
  bare = read_questions(folder / "queries.jsonl")          # no judgements: every query
  assert [q.id for q in bare] == ["q2", "q1", "q3", "q9"] and bare[0].positive_pids is None


def test_split_choice(folder, tmp_path):
  (folder / "qrels" / "test.tsv").unlink()
  with pytest.raises(FileNotFoundError, match=r"qrels/test.tsv: expected the qrels of split "
                     r"'test', found no such file \(splits: dev\)"):
    beir.qrels_path(folder, "test")
  (folder / "qrels" / "train.tsv").write_text(QRELS_DEV)
  with pytest.raises(FileNotFoundError, match=r"splits: dev, train"):
    read_questions(folder)                                  # no test, two splits: ambiguous
  (folder / "qrels" / "train.tsv").unlink()
  assert [q.id for q in read_questions(folder)] == ["q3"]   # the one split


def _err(argv, capsys):
  rc = cli.run(prepare.main, argv)
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), err
  return err[0]


def _prep(folder, out, questions=None):
  return ["beir", "--passages", str(folder), "--questions", str(questions or folder),
          "--out", str(out)]


@pytest.mark.parametrize("file,text,message", [
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\tdoc-α\n",
     "qrels/test.tsv: line 2: expected 3 tab-separated fields (query-id, corpus-id, score), "
     "found 2: 'q1\\tdoc-α'"),
    ("qrels/test.tsv", "q1\tdoc-α\t1\n",
     "qrels/test.tsv: line 1: expected 4 fields (qid 0 docid relevance) or the BEIR header "
     "'query-id<TAB>corpus-id<TAB>score', found 3"),
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\tdoc-α\thigh\n",
     "qrels/test.tsv: line 2: expected a relevance (an integer), found 'high'"),
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td4\t1\nq1\td4\t2\n",
     "qrels/test.tsv: line 3: expected one judgment per query and passage, found "
     "query 'q1' passage 'd4' again"),
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td4\t1\nq5\td4\t1\n",
     "qrels/test.tsv: line 3: expected a query id of"),
    ("corpus.jsonl", '{"_id": "a", "text": "x"}\n{"title": "T", "text": "no id"}\n',
     "corpus.jsonl: line 2: expected a non-empty string field '_id', found none"),
    ("corpus.jsonl", '{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n',
     "corpus.jsonl: line 2: expected unique passage ids, found 'a' again"),
    ("corpus.jsonl", '{"_id": "a", "text": "x"}\n{"_id": "b", "title": " ", "text": ""}\n',
     "corpus.jsonl: line 2: expected a passage text or title, found neither (passage 'b')"),
    ("corpus.jsonl", '{"_id": "a", "text": "x"}\n{"_id": "b", "text": "y"\n',
     "corpus.jsonl: line 2: expected a JSON object, found malformed JSON"),
    ("queries.jsonl", '{"_id": "q1", "text": "a"}\n{"_id": "q1", "text": "b"}\n',
     "queries.jsonl: line 2: expected unique query ids, found 'q1' again"),
])
def test_bad_beir_files_are_one_error_line(folder, tmp_path, capsys, file, text, message):
  _write(folder / file, text)
  line = _err(_prep(folder, tmp_path / "out"), capsys)
  assert line.startswith(f"error: {folder / file}: ") and message.split(": ", 1)[1] in line, line
  assert not (tmp_path / "out").exists()


def test_prepare_beir_from_a_dpr_corpus_and_qas(tmp_path, capsys):
  """SQuAD's layout (DPR TSV + qas JSON-lines with positive_pids) -> a BEIR folder, relevance 1
  for each positive; a question without positives is left out and counted."""
  psgs = _write(tmp_path / "p.tsv", "id\ttext\ttitle\n1\tFact one.\tA\n2\tFact two.\tB\n"
                "10\tFact ten.\tB\n")
  qas = _jsonl(tmp_path / "dev.qas.jsonl", [
      {"id": "x1", "question": "one?", "answers": ["one"], "positive_pids": ["1"]},
      {"id": "x2", "question": "two?", "answers": [], "positive_pids": ["2", "10"]},
      {"id": "x3", "question": "none?", "answers": ["n"], "positive_pids": []}])
  out = tmp_path / "b"
  assert cli.run(prepare.main, _prep(psgs, out, qas)) == 0
  stats = json.loads(capsys.readouterr().out)
  assert (stats["passages"], stats["queries"], stats["qrels/test.tsv"]) == (3, 2, 3)
  assert stats["questions_without_positives"] == 1
  assert [json.loads(l) for l in open(out / "corpus.jsonl")] == [
      {"_id": "1", "title": "A", "text": "Fact one."}, {"_id": "2", "title": "B",
                                                        "text": "Fact two."},
      {"_id": "10", "title": "B", "text": "Fact ten."}]
  assert [json.loads(l) for l in open(out / "queries.jsonl")] == [
      {"_id": "x1", "text": "one?", "answers": ["one"]}, {"_id": "x2", "text": "two?"}]
  assert (out / "qrels" / "test.tsv").read_text() == (
      "query-id\tcorpus-id\tscore\nx1\t1\t1\nx2\t2\t1\nx2\t10\t1\n")
  qs = read_questions(out)
  assert [(q.id, q.answers, q.positive_pids) for q in qs] == [("x1", ["one"], ["1"]),
                                                              ("x2", [], ["2", "10"])]
  assert sorted(p.name for p in out.rglob("*")) == ["corpus.jsonl", "qrels", "queries.jsonl",
                                                    "test.tsv"]       # no temporary left


def test_prepare_beir_refuses_unknown_pids_and_missing_ids(tmp_path, capsys):
  psgs = _write(tmp_path / "p.tsv", "id\ttext\ttitle\n1\tFact one.\tA\n")
  qas = _jsonl(tmp_path / "q.jsonl", [{"id": "x1", "question": "one?", "positive_pids": ["9"]}])
  assert "question 1: expected passage ids of" in _err(_prep(psgs, tmp_path / "o", qas), capsys)
  qas = _jsonl(tmp_path / "q.jsonl", [{"question": "one?", "positive_pids": ["1"]}])
  assert "q.jsonl: question 1: expected an 'id'" in _err(_prep(psgs, tmp_path / "o", qas), capsys)
  assert not (tmp_path / "o").exists()


def test_prepare_beir_demo_is_the_slices_held_out_questions(tmp_path, capsys):
  """The embedded slice: 5649 paragraphs, and its 300 held-out questions (slice.json)."""
  out = tmp_path / "demo"
  assert cli.run(prepare.main, ["beir", "--demo", "--out", str(out)]) == 0
  stats = json.loads(capsys.readouterr().out)
  assert (stats["passages"], stats["queries"]) == (5649, 300)
  c, qs = read_corpus(out), read_questions(out)
  assert len(c) == 5649 and c.ids[:3] == ["1", "2", "3"] and len(qs) == 300
  assert all(q.positive_pids and q.answers for q in qs)
  row = {pid: i for i, pid in enumerate(c.ids)}
  assert all(any(a in c.texts[row[p]] for a in q.answers) for q in qs for p in q.positive_pids)


# --- MS MARCO ---------------------------------------------------------------------------------

@pytest.fixture
def marco(tmp_path):
  d = tmp_path / "marco"
  _write(d / "collection.tsv", "0\tThe Manhattan Project made the bomb.\n"
         "00\tParis is in France.\n7\tRome is in Italy.\n")
  _write(d / "queries.dev.tsv", "1048585\twhat is paula deen's brother\n"
         "2\twhere is rome\n3\twhere is paris\n")
  _write(d / "qrels.dev.tsv", "3 0 00 1\n2\t0\t7\t1\n3 0 0 0\n")
  return d


def test_msmarco_collection_and_qrels(marco):
  for path in (marco, marco / "collection.tsv"):
    c = read_corpus(path)
    assert c.ids == ["0", "00", "7"] and c.titles == ["", "", ""]
  qs = read_questions(marco / "qrels.dev.tsv")       # the judged queries of queries.dev.tsv
  assert [(q.id, q.question, q.positive_pids) for q in qs] == [
      ("2", "where is rome", ["7"]), ("3", "where is paris", ["00"])]
  assert qs[1].relevance == {"00": 1, "0": 0}
  assert [q.id for q in read_questions(marco / "queries.dev.tsv")] == ["1048585", "2", "3"]


def test_msmarco_tsvs_are_sniffed_whatever_their_names(marco, tmp_path):
  other = _write(tmp_path / "passages.tsv", (marco / "collection.tsv").read_text())
  assert read_corpus(other).ids == ["0", "00", "7"]
  q = _write(tmp_path / "mine.tsv", "a1\twhere is rome\n")
  assert [(x.id, x.question) for x in read_questions(q)] == [("a1", "where is rome")]


@pytest.mark.parametrize("file,text,message", [
    ("qrels.dev.tsv", "3 0 00\n", "qrels.dev.tsv: line 1: expected 4 fields (qid 0 docid relevance) "
     "or the BEIR header"),
    ("qrels.dev.tsv", "3 0 00 1\n3 0 00 1\n", "qrels.dev.tsv: line 2: expected one judgment "
     "per query and passage, found query '3' passage '00' again"),
    ("qrels.dev.tsv", "4 0 00 1\n", "qrels.dev.tsv: line 1: expected a query id of"),
    ("collection.tsv", "1\ta\n1\tb\n", "collection.tsv: line 2: expected unique passage ids, "
     "found '1' again"),
    ("collection.tsv", "1\ta\n2\tb\tc\n", "collection.tsv: line 2: expected 2 tab-separated "
     "fields (id, text), found 3"),
    ("queries.dev.tsv", "2\trome\n2\tparis\n", "queries.dev.tsv: line 2: expected unique query "
     "ids, found '2' again"),
])
def test_bad_msmarco_files_are_one_error_line(marco, tmp_path, capsys, file, text, message):
  _write(marco / file, text)
  line = _err(_prep(marco, tmp_path / "out", marco / "qrels.dev.tsv"), capsys)
  assert line.startswith(f"error: {marco / file}: ") and message.split(": ", 1)[1] in line, line


def test_msmarco_to_beir_keeps_ids_and_grades(marco, tmp_path, capsys):
  out = tmp_path / "b"
  assert cli.run(prepare.main, _prep(marco, out, marco / "qrels.dev.tsv") + ["--split", "dev"]) == 0
  assert (out / "qrels" / "dev.tsv").read_text() == (
      "query-id\tcorpus-id\tscore\n2\t7\t1\n3\t00\t1\n3\t0\t0\n")
  assert [q.relevance for q in read_questions(out / "qrels" / "dev.tsv")] == [
      {"7": 1}, {"00": 1, "0": 0}]


def test_a_folder_of_neither_kind_is_refused(tmp_path, capsys):
  (tmp_path / "empty").mkdir()
  assert "expected a corpus file, a BEIR folder" in _err(
      ["beir", "--passages", str(tmp_path / "empty"), "--questions", str(tmp_path / "empty"),
       "--out", str(tmp_path / "o")], capsys)


def test_bm25_retrieval_over_a_beir_folder_keeps_string_ids(folder):
  """The one search path (Searcher) over a BEIR folder: hits carry the corpus's string ids."""
  from dpr_jax.retrieval.searcher import Searcher
  s = Searcher(str(folder), retriever="bm25")
  hits = s.search([q.question for q in read_questions(folder)], k=2)
  assert hits[0][0].pid == "7" and hits[1][0].pid == "doc-α"
  assert all(isinstance(h.pid, str) for hh in hits for h in hh)


def test_prepare_beir_squad_reads_the_squad_folder(tmp_path, monkeypatch, capsys):
  """--squad: the data folder's squad/paragraphs.tsv.gz and test.qas.jsonl.gz (or --questions)."""
  import gzip
  sq = tmp_path / "data" / "squad"
  sq.mkdir(parents=True)
  with gzip.open(sq / "paragraphs.tsv.gz", "wt") as f:
    f.write("id\ttext\ttitle\n1\tFact one.\tA\n2\tFact two.\tB\n")
  monkeypatch.setenv("DPR_DATA_DIR", str(tmp_path / "data"))
  assert "expected" in _err(["beir", "--squad", "--out", str(tmp_path / "o")], capsys)
  with gzip.open(sq / "test.qas.jsonl.gz", "wt") as f:
    f.write(json.dumps({"id": "t1", "question": "two?", "answers": ["two"],
                        "positive_pids": ["2"]}) + "\n")
  assert cli.run(prepare.main, ["beir", "--squad", "--out", str(tmp_path / "o")]) == 0
  assert (tmp_path / "o" / "qrels" / "test.tsv").read_text().splitlines()[1:] == ["t1\t2\t1"]
  assert [q.id for q in read_questions(tmp_path / "o")] == ["t1"]
