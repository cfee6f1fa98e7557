"""Overlapping word windows and results mapped back to their paragraphs (hand-made cases)."""
import json
from types import SimpleNamespace

import pytest

from dpr_jax.data import windows


def test_windows_by_hand():
  text = "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9"
  assert windows.split_words(text, 4, 2) == [
      (0, "w0 w1 w2 w3"), (2, "w2 w3 w4 w5"), (4, "w4 w5 w6 w7"), (6, "w6 w7 w8 w9")]
  assert windows.split_words(text, 4, 3) == [   # the last window ends at the last word
      (0, "w0 w1 w2 w3"), (3, "w3 w4 w5 w6"), (6, "w6 w7 w8 w9")]
  assert windows.split_words("short one", 4, 2) == [(0, "short one")]
  ids, titles, texts = windows.window_corpus(["7", "8"], ["A", "B"], [text, "x y"], 4, 3)
  assert ids == ["7~0", "7~3", "7~6", "8~0"] and titles == ["A"] * 3 + ["B"]
  assert [windows.paragraph_of(i) for i in ids] == ["7", "7", "7", "8"]
  with pytest.raises(ValueError, match="stride"):
    windows.split_words(text, 4, 5)


def test_results_over_windows_map_to_paragraphs_by_hand():
  """Window ranks p2~50, p1~0, p2~0, p3~0: paragraphs p2, p1, p3 at their best window's score;
  has_answer is that of the whole paragraph (p1's window did not hold the answer)."""
  corpus = SimpleNamespace(ids=["p1", "p2", "p3"], titles=["T1", "T2", "T3"],
                           texts=["intro ... and finally Rome", "no answer", "Rome here"],
                           path="c.tsv")
  results = [{"question": "q", "answers": ["Rome"], "ctxs": [
      {"id": "p2~50", "score": 9.0, "has_answer": False},
      {"id": "p1~0", "score": 8.0, "has_answer": False},
      {"id": "p2~0", "score": 7.0, "has_answer": False},
      {"id": "p3~0", "score": 6.0, "has_answer": True}]}]
  got = windows.to_paragraphs(results, corpus, k=5)[0]["ctxs"]
  assert [(c["id"], c["score"], c["has_answer"]) for c in got] == [
      ("p2", 9.0, False), ("p1", 8.0, True), ("p3", 6.0, True)]
  assert got[1]["text"] == "intro ... and finally Rome" and got[1]["title"] == "T1"
  assert [c["id"] for c in windows.to_paragraphs(results, corpus, k=2)[0]["ctxs"]] == ["p2", "p1"]
  with pytest.raises(ValueError, match="belongs to no paragraph"):
    windows.to_paragraphs([{**results[0], "ctxs": [{"id": "p9~0"}]}], corpus, k=1)


def test_prepare_windows_then_retrieve_paragraphs(tmp_path, capsys):
  """The commands: a corpus cut into windows, BM25 over the windows, results over paragraphs."""
  from dpr_jax.retrieval import retrieve
  from dpr_jax.tools import prepare
  filler = " ".join(f"filler{i}" for i in range(30))
  psgs = tmp_path / "psgs.tsv"
  psgs.write_text("id\ttext\ttitle\n"
                  f"1\t{filler} the tower of pisa leans\tPisa\n"
                  f"2\tthe colosseum is in rome {filler}\tRome\n"
                  f"3\t{filler}\tNothing\n")
  assert prepare.main(["windows", "--passages", str(psgs), "--out", str(tmp_path / "w.tsv"),
                       "--words", "10", "--stride", "5"]) == 0
  assert json.loads(capsys.readouterr().out)["windows"] == 6 + 6 + 5  # 35, 35, 30 words
  qs = tmp_path / "q.jsonl"
  qs.write_text('{"question": "which tower leans?", "answers": ["pisa"]}\n')
  retrieve.main(["--retriever", "bm25", "--passages", str(tmp_path / "w.tsv"), "--paragraphs",
                 str(psgs), "--questions", str(qs), "--k", "2", "--out", str(tmp_path / "r.json")])
  r = json.loads((tmp_path / "r.json").read_text())[0]
  assert [c["id"] for c in r["ctxs"]][0] == "1" and len({c["id"] for c in r["ctxs"]}) == 2
  assert r["ctxs"][0]["has_answer"] and r["ctxs"][0]["text"].endswith("leans")


def _windows_files(tmp_path):
  """Paragraph 1 cut into ten windows that all hold the question's words; paragraphs 2 and 3 one
  window each, 2 sharing one word with the question, 3 none."""
  paras = tmp_path / "paras.tsv"
  paras.write_text("id\ttext\ttitle\n1\tthe tower of pisa leans (long)\tPisa\n"
                   "2\ta tower in another town\tTown\n3\tnothing to see\tNothing\n")
  wins = tmp_path / "wins.tsv"
  rows = [f"1~{5 * i}\tthe tower of pisa leans part {i}\tPisa" for i in range(10)]
  wins.write_text("id\ttext\ttitle\n" + "\n".join(
      rows + ["2~0\ta tower in another town\tTown", "3~0\tnothing to see\tNothing"]) + "\n")
  qs = tmp_path / "q.jsonl"
  qs.write_text('{"question": "which tower of pisa leans", "answers": ["pisa"], '
                '"positive_pids": ["1"]}\n')
  return paras, wins, qs


def test_paragraphs_fetch_deeper_until_k_and_warn_when_the_corpus_is_short(tmp_path, capsys):
  """k=2: the first 4k = 8 windows are all paragraph 1's, so windows are fetched again, deeper
  (16, i.e. all 12), and paragraph 2 (one shared word) comes second. k=4 asks more than the
  three paragraphs: every window is fetched, three are listed, and a warning counts the
  question."""
  from dpr_jax import cli
  paras, wins, qs = _windows_files(tmp_path)
  common = ["--retriever", "bm25", "--passages", str(wins), "--paragraphs", str(paras),
            "--questions", str(qs)]
  assert cli.retrieve([*common, "--k", "2", "--out", str(tmp_path / "r2.json")]) == 0
  r = json.loads((tmp_path / "r2.json").read_text())[0]
  assert [c["id"] for c in r["ctxs"]] == ["1", "2"]
  assert [c["has_answer"] for c in r["ctxs"]] == [True, False]
  assert "fewer than" not in capsys.readouterr().err
  assert cli.retrieve([*common, "--k", "4", "--out", str(tmp_path / "r4.json")]) == 0
  r = json.loads((tmp_path / "r4.json").read_text())[0]
  assert [c["id"] for c in r["ctxs"]] == ["1", "2", "3"]
  got = capsys.readouterr()
  assert "1 of 1 questions have fewer than 4 paragraphs" in got.err
  assert "recall@k" in got.out  # scored by paragraph: recall is measurable


def test_windows_without_paragraphs_warn_instead_of_recall_zero(tmp_path, capsys):
  """Window ids (1~0, ...) never equal the gold paragraph id 1: no recall row (it would read
  0.00), a warning naming --paragraphs, and top-k accuracy as usual."""
  from dpr_jax import cli
  paras, wins, qs = _windows_files(tmp_path)
  assert cli.retrieve(["--retriever", "bm25", "--passages", str(wins), "--questions", str(qs),
                       "--k", "2", "--out", str(tmp_path / "r.json")]) == 0
  got = capsys.readouterr()
  assert "recall@k" not in got.out and "MRR@k" not in got.out
  assert "top-k accuracy" in got.out and "100.00" in got.out
  assert "holds windows" in got.err and "--paragraphs" in got.err
  r = json.loads((tmp_path / "r.json").read_text())[0]
  assert len(r["ctxs"]) == 2 and all(c["id"].startswith("1~") for c in r["ctxs"])
  # paragraph ids and window ids are told apart
  assert windows.is_window_id("1~45") and not windows.is_window_id("1")
  assert not windows.is_window_id("~3") and not windows.is_window_id("a~b")
