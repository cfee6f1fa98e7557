"""Qrels and TREC run files (dpr_jax.data.trec), ir-measures' metrics (dpr_jax.retrieval.measures),
`retrieve --format trec` and `evaluate --qrels`: checked against values worked out by hand."""
import gzip
import json
import math

import pytest

from dpr_jax import cli
from dpr_jax.data import trec
from dpr_jax.data.textio import DataError
from dpr_jax.retrieval.measures import measure, parse_measures

# Two judged queries answered by the run, one judged query it does not answer (q3), one answered
# query nobody judged (q4). Graded: a is relevance 2.
QRELS = {"q1": {"a": 2, "b": 1, "d": 1}, "q2": {"x": 1}, "q3": {"z": 1}}
RUN = {"q1": ["c", "a", "b", "e"], "q2": ["y", "w", "x"], "q4": ["m"]}


def _by_hand() -> dict:
  """The four measures of RUN against QRELS, worked out term by term (nDCG: linear gain,
  discount log2(rank + 1), as trec_eval)."""
  ndcg1 = (2 / math.log2(3) + 1 / math.log2(4)) / (2 + 1 / math.log2(3) + 1 / math.log2(4))
  ndcg2 = (1 / math.log2(4)) / 1
  return {"nDCG@10": (ndcg1 + ndcg2 + 0) / 3,
          "RR@10": (1 / 2 + 1 / 3 + 0) / 3,       # first relevant at rank 2, rank 3, none
          "R@100": (2 / 3 + 1 + 0) / 3,           # d never retrieved
          "AP": ((1 / 2 + 2 / 3) / 3 + (1 / 3) / 1 + 0) / 3,
          "RR@2": (1 / 2 + 0 + 0) / 3}            # q2's x is at rank 3


def test_measures_equal_the_hand_worked_values():
  m = measure(QRELS, RUN, "nDCG@10,RR@10,R@100,AP,RR@2")
  for name, value in _by_hand().items():
    assert m[name] == pytest.approx(value, abs=1e-9), name


def test_graded_relevance_is_honoured():
  flat = {**QRELS, "q1": {"a": 1, "b": 1, "d": 1}}
  m = measure(flat, RUN, "nDCG@10")
  ndcg1 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
  assert m["nDCG@10"] == pytest.approx((ndcg1 + 0.5) / 3)
  assert m["nDCG@10"] != pytest.approx(measure(QRELS, RUN, "nDCG@10")["nDCG@10"])


def test_unknown_measure_is_named():
  with pytest.raises(ValueError, match="--metrics: .*'Bogus@3'"):
    parse_measures("nDCG@10,Bogus@3")


def test_qrels_both_layouts_read_and_written(tmp_path):
  (tmp_path / "q.txt").write_text("q1 0 a 2\nq1 0 b 1\n\nq1 0 d 1\nq2 0 x 1\nq3 0 z 1\n")
  (tmp_path / "q.tsv").write_text("query-id\tcorpus-id\tscore\nq1\ta\t2\nq1\tb\t1\nq1\td\t1\n"
                                  "q2\tx\t1\nq3\tz\t1\n")
  assert trec.read_qrels(tmp_path / "q.txt") == QRELS
  assert trec.read_qrels(tmp_path / "q.tsv") == QRELS
  (tmp_path / "ids.txt").write_text("007 0 0042 1\n")
  assert trec.read_qrels(tmp_path / "ids.txt") == {"007": {"0042": 1}}  # ids stay strings
  for beir, name in ((False, "w.txt"), (True, "w.tsv.gz")):
    trec.write_qrels(tmp_path / name, QRELS, beir=beir)
    assert trec.read_qrels(tmp_path / name) == QRELS
  assert gzip.open(tmp_path / "w.tsv.gz", "rt").readline() == "query-id\tcorpus-id\tscore\n"


@pytest.mark.parametrize("text,match", [
    ("q1 0 a 1\nq1 0 b\n", "line 2: expected 4 fields"),
    ("query-id\tcorpus-id\tscore\nq1\ta\t1\nq1\tb\n", "line 3: expected 3 tab-separated"),
    ("query-id\tcorpus-id\tscore\nq1\ta\t\n", "line 2: expected 3 tab-separated"),
    ("q1 0 a 1\nq2 0 a 1\nq1 0 a 0\n", "line 3: expected one judgment .* 'q1' passage 'a'"),
    ("q1 0 a yes\n", "line 1: expected a relevance"),
    ("\n\n", "expected relevance judgments"),
])
def test_bad_qrels_name_file_and_line(tmp_path, text, match):
  (tmp_path / "bad.txt").write_text(text)
  with pytest.raises(DataError, match=f"bad.txt: {match}"):
    trec.read_qrels(tmp_path / "bad.txt")


def _results(run: dict) -> list[dict]:
  return [{"id": q, "question": q, "answers": [], "ctxs": [
      {"id": p, "score": float(10 - i)} for i, p in enumerate(ids)]} for q, ids in run.items()]


def test_run_written_and_read_back(tmp_path):
  trec.write_run(tmp_path / "r.trec", _results(RUN), "tag1")
  lines = (tmp_path / "r.trec").read_text().splitlines()
  assert lines[0] == "q1 Q0 c 1 10.000000 tag1" and lines[5] == "q2 Q0 w 2 9.000000 tag1"
  assert len(lines) == 8
  assert trec.read_run(tmp_path / "r.trec") == RUN
  assert trec.is_trec_run(tmp_path / "r.trec")
  no_id = [{"question": "q", "answers": [], "ctxs": [{"id": "a", "score": 1.0}]}]
  trec.write_run(tmp_path / "n.trec", no_id, "t")
  assert (tmp_path / "n.trec").read_text() == "0 Q0 a 1 1.000000 t\n"  # qid: the position


def test_run_ordered_by_score_then_rank(tmp_path):
  (tmp_path / "r.trec").write_text("q1 Q0 b 2 1.0 t\nq1 Q0 a 1 1.0 t\nq1 Q0 c 3 5.0 t\n"
                                   "q2 Q0 z 1 -1 t\n")
  assert trec.read_run(tmp_path / "r.trec") == {"q1": ["c", "a", "b"], "q2": ["z"]}


@pytest.mark.parametrize("text,match", [
    ("q1 Q0 a 1 2.0 t\nq1 Q0 b 2 1.0\n", "line 2: expected 6 fields"),
    ("q1 Q0 a 1 2.0 t\nq1 Q0 b 2 1.0 t\nq1 Q0 a 3 0.5 t\n", "line 3: expected each passage once"),
    ("q1 Q0 a one 2.0 t\n", "line 1: expected a rank"),
    ("q1 Q0 a 1 high t\n", "line 1: expected a score"),
    ("", r"expected a TREC run \(qid .*found an empty file"),
])
def test_bad_runs_name_file_and_line(tmp_path, text, match):
  (tmp_path / "bad.trec").write_text(text)
  with pytest.raises(DataError, match=f"bad.trec: {match}"):
    trec.read_run(tmp_path / "bad.trec")


def test_evaluate_reads_a_trec_run_and_beir_qrels(tmp_path, capsys):
  trec.write_run(tmp_path / "r.trec", _results(RUN), "t")
  trec.write_qrels(tmp_path / "qrels.tsv", QRELS, beir=True)
  assert cli.evaluate([str(tmp_path / "r.trec"), "--qrels", str(tmp_path / "qrels.tsv")]) == 0
  m = json.loads((tmp_path / "r.trec.metrics.json").read_text())
  for name in ("nDCG@10", "RR@10", "R@100", "AP"):
    assert m[name] == pytest.approx(_by_hand()[name]), name
  assert "nDCG@10" in capsys.readouterr().out


def test_evaluate_json_with_qrels_adds_measures_to_top_k(tmp_path):
  results = _results(RUN)
  for r, answers in zip(results, (["c text"], ["no"], ["m"])):
    r["answers"] = answers
    for c in r["ctxs"]:
      c["has_answer"] = c["id"] in ("a", "m")
  (tmp_path / "r.json").write_text(json.dumps(results))
  trec.write_qrels(tmp_path / "qrels.txt", QRELS)
  assert cli.evaluate([str(tmp_path / "r.json"), "--qrels", str(tmp_path / "qrels.txt"),
                       "--metrics", "RR@10,AP", "--k", "1,2"]) == 0
  m = json.loads((tmp_path / "r.metrics.json").read_text())
  assert (m["top1"], m["top2"]) == pytest.approx((1 / 3, 2 / 3))  # q1's a at 2, q4's m at 1
  assert (m["RR@10"], m["AP"]) == pytest.approx((_by_hand()["RR@10"], _by_hand()["AP"]))


def test_retrieve_format_trec_and_both(tmp_path):
  (tmp_path / "p.tsv").write_text("id\ttext\ttitle\np1\tthe river flows to the sea\tRiver\n"
                                  "p2\tparis is the capital of france\tParis\n"
                                  "p3\tmountains rise above the city\tCity\n")
  (tmp_path / "q.jsonl").write_text(
      json.dumps({"id": "qa", "question": "capital of france", "answers": ["paris"],
                  "positive_pids": ["p2"]}) + "\n" +
      json.dumps({"id": "qb", "question": "where does the river flow", "answers": ["sea"],
                  "positive_pids": ["p1"]}) + "\n")
  base = ["--retriever", "bm25", "--passages", str(tmp_path / "p.tsv"), "--questions",
          str(tmp_path / "q.jsonl"), "--k", "2"]
  assert cli.retrieve(base + ["--out", str(tmp_path / "r.trec"), "--format", "trec"]) == 0
  assert not (tmp_path / "r.json").exists()
  run = trec.read_run(tmp_path / "r.trec")
  assert run["qa"][0] == "p2" and run["qb"][0] == "p1"
  assert all(l.split()[5] == "dpr-jax-bm25" for l in (tmp_path / "r.trec").read_text().splitlines())
  assert cli.retrieve(base + ["--out", str(tmp_path / "b.json"), "--format", "both",
                              "--run_tag", "mine"]) == 0
  assert json.loads((tmp_path / "b.json").read_text())[0]["ctxs"][0]["id"] == "p2"
  assert trec.read_run(tmp_path / "b.trec") == run


@pytest.mark.slow
def test_bm25_trec_run_scored_by_ir_measures_equals_our_recall_on_squad(squad_dir, tmp_path):
  """BM25 on the SQuAD corpus (the shared folder, else the demo slice), 300 questions: the TREC
  run scored by ir-measures against BEIR qrels made from the gold paragraphs equals the
  gold-paragraph hit rate and reciprocal rank counted here from the JSON of the same run, and
  `evaluate`'s recall@k / MRR@k rows."""
  from dpr_jax.retrieval.evaluate import evaluate
  rows = [json.loads(l) for l in gzip.open(squad_dir / "train.qas.jsonl.gz", "rt")]
  rows = [r for r in rows if r.get("positive_pids")][::max(1, len(rows) // 300)][:300]
  (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  trec.write_qrels(tmp_path / "qrels.tsv", {r["id"]: {p: 1 for p in r["positive_pids"]}
                                            for r in rows}, beir=True)
  assert cli.retrieve(["--retriever", "bm25", "--passages", str(squad_dir / "paragraphs.tsv.gz"),
                       "--questions", str(tmp_path / "q.jsonl"), "--k", "20", "--no_text",
                       "--format", "both", "--out", str(tmp_path / "bm25.json")]) == 0
  ks = (1, 5, 20)
  assert cli.evaluate([str(tmp_path / "bm25.trec"), "--qrels", str(tmp_path / "qrels.tsv"),
                       "--metrics", ",".join(f"R@{k},RR@{k}" for k in ks)]) == 0
  lib = json.loads((tmp_path / "bm25.trec.metrics.json").read_text())
  results = json.loads((tmp_path / "bm25.json").read_text())
  ours = evaluate(results, ks)
  for k in ks:
    hit, rr = [], []
    for r in results:
      ids, gold = [c["id"] for c in r["ctxs"][:k]], set(r["positive_pids"])
      hit.append(len(gold & set(ids)) / len(gold))
      rr.append(next((1 / (i + 1) for i, p in enumerate(ids) if p in gold), 0.0))
    assert lib[f"R@{k}"] == pytest.approx(sum(hit) / len(hit), abs=1e-12)
    assert lib[f"RR@{k}"] == pytest.approx(sum(rr) / len(rr), abs=1e-12)
    assert (ours[f"recall@{k}"], ours[f"mrr@{k}"]) == pytest.approx((lib[f"R@{k}"],
                                                                      lib[f"RR@{k}"]))
  assert 0.3 < lib["R@20"] <= 1.0
