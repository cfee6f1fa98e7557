"""The reader: span labelling, the marginal loss by hand, span decoding, and a tiny end-to-end
train -> predict -> answer run."""
import json
import re

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from dpr_jax.reader import data as reader_data
from dpr_jax.models.reader import best_span, reader_loss


@pytest.fixture(scope="module")
def tok(minilm_path):
  return reader_data.ReaderTokenizer(minilm_path, max_length=40, question_max_length=8)


def _answers_found(tok, question, title, text, answers):
  enc = tok.encode(question, title, text)
  return [reader_data.span_text(enc, s, e) for s, e in reader_data.find_spans(enc, answers, tok)]


def test_spans_every_occurrence_with_accents_start_and_end(tok):
  text = "São Paulo is large. Many people live in Sao Paulo, the city of SÃO PAULO"
  assert _answers_found(tok, "where?", "Brazil", text, ["Sao Paulo"]) == [
      "São Paulo", "Sao Paulo", "SÃO PAULO"]  # start, middle, end of the text; accents folded
  # two answers, one of them a sub-span of nothing: both found, in order
  assert _answers_found(tok, "q", "", "Paris or Lyon, then Paris.", ["Paris", "Lyon"]) == [
      "Paris", "Lyon", "Paris"]
  assert _answers_found(tok, "q", "", "nothing relevant here", ["Rome"]) == []


def test_spans_beyond_truncation_are_dropped(tok):
  text = "Rome " + "filler word " * 40 + "Rome"
  enc = tok.encode("which city?", "T", text)
  assert len(enc.ids) == 40 and enc.ids[-1] == tok.sep
  assert [reader_data.span_text(enc, s, e)
          for s, e in reader_data.find_spans(enc, ["Rome"], tok)] == ["Rome"]


def test_answer_twice_and_crossing_the_cut(tok):
  # "Rome" twice: both occurrences are spans of the positive
  assert _answers_found(tok, "q", "T", "Rome was built; Rome fell.", ["Rome"]) == ["Rome", "Rome"]
  # "Porta Pia" (port ##a pia) crossing the cut: its first piece is the last one kept
  room = tok.text_room("which gate?", "T")
  text = " ".join(["house"] * (room - 1)) + " Porta Pia stands there"
  enc = tok.encode("which gate?", "T", text)
  assert enc.text_end - enc.text_start == room
  assert reader_data.span_text(enc, enc.text_end - 1, enc.text_end - 1) == "Port"
  assert reader_data.find_spans(enc, ["Porta Pia"], tok) == []


def test_a_positive_past_the_cut_is_read_as_a_window(tok):
  """The answer lies past the length cut: the training positive is the window that holds it
  (its characters map back into the passage), and a question with no answer anywhere is
  skipped and counted."""
  from dpr_jax.data import examples
  room = tok.text_room("which gate?", "T")
  words = [f"w{i}" for i in range(3 * room)]
  text = " ".join(words) + " Porta Pia stands there"
  pos = examples.Passage("T", text)
  ex = examples.Example("which gate?", ("Porta Pia",), (pos,), (examples.Passage("N", "no"),), ())
  enc, spans, windowed, _ = reader_data.positive_input(ex, np.random.default_rng(0), tok)
  assert windowed and len(enc.ids) <= tok.max_length
  assert [reader_data.span_text(enc, s, e) for s, e in spans] == ["Porta Pia"]
  s, e = spans[0]
  a = enc.offsets[s - enc.text_start][0]
  assert text[a: a + len("Porta Pia")] == "Porta Pia" and a == text.index("Porta Pia")
  none = examples.Example("q", ("Madrid",), (pos,), (), ())
  b, stats = reader_data.train_batch([none, ex, ex], [0, 1, 2], np.random.default_rng(0), tok,
                                     questions=2, passages=2)
  assert stats == {"skipped_no_answer": 1, "windowed_positives": 2}
  assert b["input_ids"].shape[:2] == (2, 2) and b["span_mask"][:, 0].tolist() == [1, 1]
  with pytest.raises(reader_data.ReaderDataError, match="only 0 of 1 candidate questions"):
    reader_data.train_batch([none], [0], np.random.default_rng(0), tok, questions=1, passages=2)


def test_scoring_options_on_hand_made_readings():
  """select: the highest selection logit; joint: span + selection across passages; fused: joint
  + the standardised retriever score; only the first k readings count."""
  from dpr_jax.reader.predict import Reading, choose
  r = [Reading("a", span_score=1.0, select=2.0, title="", text=""),
       Reading("b", span_score=4.0, select=0.5, title="", text=""),
       Reading("c", span_score=3.0, select=1.0, title="", text="")]
  assert choose(r, 3, "select") == (0, 2.0)
  assert choose(r, 3, "joint") == (1, 4.5)
  assert choose(r, 1, "joint") == (0, 3.0)
  scores = [10.0, 0.0, 20.0]            # mean 10, std sqrt(200/3): z = 0, -1.2247, 1.2247
  z = np.array([0.0, -1.0, 1.0]) * np.sqrt(1.5)
  j, s = choose(r, 3, "fused", scores, fusion_weight=1.0)
  assert j == 2 and s == pytest.approx(4.0 + z[2])
  assert choose(r, 3, "fused", scores, fusion_weight=0.1)[0] == 1
  with pytest.raises(ValueError, match="needs a retriever score"):
    choose(r, 3, "fused", None)


def test_marginal_loss_matches_hand_computation():
  # 1 question, 2 passages (positive first), 4 tokens; text tokens are 1..3 of each passage.
  start = np.array([[[0.0, 1.0, 2.0, 0.5], [0.0, 0.0, 0.0, 0.0]]], np.float32)
  end = np.array([[[0.0, 0.3, 1.0, 2.0], [0.0, 0.0, 0.0, 0.0]]], np.float32)
  select = np.array([[1.0, 0.0]], np.float32)
  text = np.array([[[0, 1, 1, 1], [0, 1, 1, 1]]], np.int32)
  # answer occurs at (1, 2) and (3, 3); a third, masked-out slot must not count
  ss, se, sm = np.array([[1, 3, 2]]), np.array([[2, 3, 2]]), np.array([[1, 1, 0]])
  out = reader_loss(*(jnp.asarray(x) for x in (start, end, select, text, ss, se, sm)))
  ps = np.exp([1.0, 2.0, 0.5]) / np.exp([1.0, 2.0, 0.5]).sum()      # softmax over tokens 1..3
  pe = np.exp([0.3, 1.0, 2.0]) / np.exp([0.3, 1.0, 2.0]).sum()
  span = -np.log(ps[0] * pe[1] + ps[2] * pe[2])
  sel = -np.log(np.exp(1.0) / (np.exp(1.0) + 1.0))
  np.testing.assert_allclose(float(out["span_loss"]), span, rtol=1e-6)
  np.testing.assert_allclose(float(out["select_loss"]), sel, rtol=1e-6)
  np.testing.assert_allclose(float(out["loss"]), span + sel, rtol=1e-6)


def test_best_span_respects_text_mask_order_and_length():
  start = np.array([9.0, 1.0, 3.0, 0.0, 0.0])
  end = np.array([9.0, 0.0, 0.0, 2.0, 5.0])
  mask = np.array([0, 1, 1, 1, 1])
  assert best_span(start, end, mask, max_answer_length=10)[:2] == (2, 4)   # token 0 is masked
  assert best_span(start, end, mask, max_answer_length=2)[:2] == (2, 3)    # 3 tokens too long


def _results(n, rng):
  """Tiny retrieval results: the answer is a city name in passage 0, absent from the rest."""
  cities = ["Paris", "Rome", "Berlin", "Madrid", "Vienna", "Prague"]
  rows = []
  for i in range(n):
    c = cities[i % len(cities)]
    ctxs = [{"id": f"{i}-0", "title": c, "text": f"The capital is {c} and it is old ({i}).",
             "has_answer": True, "score": 1.0}]
    for j in range(1, 4):
      other = cities[(i + j) % len(cities)]
      ctxs.append({"id": f"{i}-{j}", "title": other, "text": f"Nothing about it in {other}.",
                   "has_answer": False, "score": 0.5})
    rows.append({"question": f"what is capital number {i}?", "answers": [c], "ctxs": ctxs})
  return rows


def _tiny_reader_config(tmp_path, train_rows, dev_rows, hidden: int):
  """reader_squad.py on a 1-layer random BERT of width `hidden`, reading the rows written to
  tmp_path/train.json and dev.json."""
  from dpr_jax.configs import reader_squad
  (tmp_path / "train.json").write_text(json.dumps(train_rows))
  (tmp_path / "dev.json").write_text(json.dumps(dev_rows))
  c = reader_squad.get_config()
  c.model.init = "random"
  c.model.bert = ml_collections.ConfigDict(dict(hidden_size=hidden, num_hidden_layers=1,
                                                num_attention_heads=4, intermediate_size=2 * hidden,
                                                max_position_embeddings=64))
  c.data.train_results, c.data.dev_results = str(tmp_path / "train.json"), str(tmp_path / "dev.json")
  c.data.passages, c.data.max_length = "", 48
  return c


def test_tiny_reader_trains_predicts_and_answers(tmp_path, minilm_path, capsys):
  from dpr_jax.reader import answer, train as reader_train
  rows = _results(12, np.random.default_rng(0))
  c = _tiny_reader_config(tmp_path, rows, rows[:4], hidden=32)
  c.train.batch_questions, c.train.max_steps, c.train.log_every = 8, 3, 1
  c.eval.every, c.eval.top_k, c.eval.batch_questions, c.eval.at_start = 3, 4, 8, False
  last = reader_train.train(c, tmp_path / "reader")
  lines = [json.loads(l) for l in (tmp_path / "reader/metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines if "train/loss" in l] == [1, 2, 3]
  evals = [l for l in lines if "eval/em" in l]
  assert [l["step"] for l in evals] == [3] and evals[0]["eval/questions"] == 4
  assert last["eval/em"] == evals[0]["eval/em"] and last["train/loss"] == lines[-2]["train/loss"]
  answer.main(["--reader", str(tmp_path / "reader"), "--results", str(tmp_path / "dev.json"),
               "--passages", str(_corpus(tmp_path, rows)), "--top_k", "4",
               "--out", str(tmp_path / "pred.json")])
  preds = json.loads((tmp_path / "pred.json").read_text())
  assert [(p["question"], p["answers"]) for p in preds] == [(r["question"], r["answers"])
                                                            for r in rows[:4]]
  # The printed EM against SQuAD's normalisation written out here.
  norm = lambda t: " ".join(w for w in re.sub(r"[^\w\s]", " ", t.lower()).split()
                            if w not in ("a", "an", "the"))
  em = np.mean([norm(p["prediction"]) in {norm(a) for a in p["answers"]} for p in preds])
  assert f"EM {100 * em:.2f}" in capsys.readouterr().out


def test_tiny_reader_learns_a_synthetic_task(tmp_path):
  """A 1-layer random BERT learns to select the passage that names the capital and to read the
  city from it: EM ~0 before training, >= 0.9 after 40 steps (seconds). The validation
  questions' passages are shuffled, so the rank of the positive says nothing."""
  from dpr_jax.reader import train as reader_train
  rng = np.random.default_rng(0)
  rows = _results(40, rng)
  for r in rows[32:]:
    rng.shuffle(r["ctxs"])
  c = _tiny_reader_config(tmp_path, rows[:32], rows[32:], hidden=64)
  c.data.passages_per_question = 4
  c.train.batch_questions, c.train.max_steps, c.train.log_every, c.train.save_every = 8, 40, 10, 0
  c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay = 3e-3, 4, 0.0
  c.eval.every, c.eval.at_start, c.eval.top_k, c.eval.batch_questions = 40, True, 4, 8
  reader_train.train(c, tmp_path / "reader")
  lines = [json.loads(l) for l in (tmp_path / "reader/metrics.jsonl").read_text().splitlines()]
  em = {l["step"]: l["eval/em"] for l in lines if "eval/em" in l}
  assert sorted(em) == [0, 40]
  assert em[0] <= 0.25 and em[40] >= 0.9, em

  # The trained reader behind `answer`: live BM25 retrieval on a DPR .qa.csv, fused scoring,
  # and the gold paragraphs of a DPR training-format file.
  from dpr_jax.reader import answer
  dev = rows[32:]
  qa_csv = tmp_path / "dev.qa.csv"
  qa_csv.write_text("".join(f"{r['question']}\t{json.dumps(r['answers'])}\n" for r in dev))
  answer.main(["--reader", str(tmp_path / "reader"), "--retriever", "bm25", "--passages",
               str(_corpus(tmp_path, dev)), "--questions", str(qa_csv), "--top_k", "4",
               "--scoring", "fused", "--out", str(tmp_path / "live.json")])
  live = json.loads((tmp_path / "live.json").read_text())
  assert [p["question"] for p in live] == [r["question"] for r in dev]
  assert all({"span_score", "passage_score", "retriever_score", "passage_id"} <= set(p)
             for p in live)
  assert np.mean([p["prediction"] == p["answers"][0] for p in live]) >= 0.9
  gold = tmp_path / "gold.jsonl"
  gold.write_text("".join(json.dumps({
      "question": r["question"], "answers": r["answers"],
      "positive_ctxs": [c for c in r["ctxs"] if c["has_answer"]]}) + "\n" for r in dev))
  answer.main(["--reader", str(tmp_path / "reader"), "--gold", str(gold), "--out",
               str(tmp_path / "gold.json")])
  preds = json.loads((tmp_path / "gold.json").read_text())
  assert [p["passage_id"] for p in preds] == [f"{i}-0" for i in range(32, 40)]
  assert np.mean([p["prediction"] == p["answers"][0] for p in preds]) >= 0.9


def _corpus(tmp_path, rows):
  f = tmp_path / "corpus.tsv"
  f.write_text("id\ttext\ttitle\n" + "".join(f"{c['id']}\t{c['text']}\t{c['title']}\n"
                                              for r in rows for c in r["ctxs"]))
  return f


def test_several_results_files_are_read_once_and_mapped_back():
  """Two retrievers' lists overlap: the union is read once (each pair once, with every passage
  of the union, not just the first k), and each file gets the readings of its own passages in
  its own order."""
  from types import SimpleNamespace
  from dpr_jax.reader.answer import read_sources
  from dpr_jax.reader.predict import Reading
  calls = []

  def read(results, progress=True, top_k=None):  # as QA.read: the QA's top_k by default
    top_k = top_k or qa.top_k
    calls.append([(r["question"], c["id"]) for r in results for c in r["ctxs"][:top_k]])
    return [[Reading(c["text"], 0.0, 0.0, "", c["text"]) for c in r["ctxs"][:top_k]]
            for r in results]
  qa = SimpleNamespace(top_k=2, read=read)
  ctx = lambda i: {"id": i, "text": f"text {i}"}
  a = [{"question": "q0", "ctxs": [ctx("1"), ctx("2"), ctx("9")]},
       {"question": "q1", "ctxs": [ctx("3"), ctx("4")]}]
  b = [{"question": "q0", "ctxs": [ctx("5"), ctx("1")]},
       {"question": "q1", "ctxs": [ctx("6"), ctx("7")]}]
  got = read_sources(qa, {"a": a, "b": b})
  assert [[r.answer for r in q] for q in got["a"]] == [["text 1", "text 2"], ["text 3", "text 4"]]
  assert [[r.answer for r in q] for q in got["b"]] == [["text 5", "text 1"], ["text 6", "text 7"]]
  assert calls == [[("q0", "1"), ("q0", "2"), ("q0", "5"),
                    ("q1", "3"), ("q1", "4"), ("q1", "6"), ("q1", "7")]]
