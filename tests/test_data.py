import gzip
import json

import numpy as np
import pytest

from dpr_jax.data.examples import (DataError, Dataset, Example, Passage, TrainBatches, iter_records,
                          load_dataset, validation_set)


def rec(i, pos=True, hard=2):
  ctx = lambda k: {"title": f"t{i}{k}", "text": f"text {i} {k}", "passage_id": f"{i}-{k}"}
  return {"question": f"q{i}?", "answers": [f"a{i}"],
          "positive_ctxs": [ctx("p")] if pos else [], "negative_ctxs": [ctx("n")],
          "hard_negative_ctxs": [ctx(f"h{j}") for j in range(hard)]}


def test_json_list_is_streamed(tmp_path):
  f = tmp_path / "x.json"
  recs = [rec(i) for i in range(300)]
  # Large records straddling the reader's 1 MiB buffer boundaries.
  for r in recs:
    r["positive_ctxs"][0]["text"] = "w " * 3000
  f.write_text(json.dumps(recs, indent=2))
  got = [r for _, r in iter_records(f)]
  assert got == recs


def test_jsonl_gz_and_no_positive_skipped_and_counted(tmp_path):
  f = tmp_path / "x.jsonl.gz"
  with gzip.open(f, "wt") as g:
    for i in range(5):
      g.write(json.dumps(rec(i, pos=i != 2)) + "\n")
  d = load_dataset(f)
  assert len(d.examples) == 4 and d.skipped_no_positive == 1
  assert d.examples[0].positives[0] == Passage("t0p", "text 0 p", "0-p")


@pytest.mark.parametrize("content,match", [
    ('{"question": "q", "positive_ctxs": []}\n{not json}\n', r"x.jsonl: line 2: expected a JSON record, found malformed JSON"),
    ('{"positive_ctxs": [{"text": "t"}]}\n', r"record 1: expected a non-empty string field 'question', found None"),
    ('{"question": "q"}\n', r"record 1: expected a list field 'positive_ctxs', found none"),
    ('{"question": "q", "positive_ctxs": [{"title": "a"}]}\n',
     r"record 1: positive_ctxs\[0\] must be an object with a string 'text'"),
    ('{"question": "q", "positive_ctxs": [{"text": "  "}]}\n',
     r"record 1: positive_ctxs\[0\] has an empty 'text'"),
])
def test_bad_records_name_file_and_record(tmp_path, content, match):
  f = tmp_path / "x.jsonl"
  f.write_text(content)
  with pytest.raises(DataError, match=match):
    load_dataset(f)


def test_unclosed_json_list(tmp_path):
  f = tmp_path / "x.json"
  f.write_text('[{"question": "q", "positive_ctxs": [{"text": "t"}]}, {"question": ')
  with pytest.raises(DataError, match=r"x.json: record 2: expected a JSON record, found malformed JSON"):
    load_dataset(f)


def _ds(n, hard=2, name="d"):
  exs = [Example(f"{name}{i}", ("a",), (Passage("t", f"{name}p{i}", f"{name}p{i}"),),
                 tuple(Passage("t", f"{name}h{i}{j}", None) for j in range(hard)), ())
         for i in range(n)]
  return Dataset(name, exs, 0)


def test_batches_are_deterministic_and_cover_an_epoch():
  b1 = TrainBatches([_ds(40)], [1.0], 8, 1, seed=3)
  b2 = TrainBatches([_ds(40)], [1.0], 8, 1, seed=3)
  assert b1.steps_per_epoch == 5
  qs = [q for s in range(5) for q in b1.batch(s)[0]]
  assert sorted(qs) == sorted(f"d{i}" for i in range(40))  # an epoch sees each once
  for s in (0, 4, 5, 12):
    assert b1.batch(s) == b2.batch(s)
  assert b1.batch(0) != b1.batch(5)  # a new order each epoch
  q, p = b1.batch(7)
  assert len(p) == 2 * len(q)
  for i, qq in enumerate(q):  # question-major: positive first, then its hard negative
    assert p[2 * i].text == f"dp{qq[1:]}" and p[2 * i + 1].text.startswith(f"dh{qq[1:]}")


def test_process_slices_make_up_the_global_batch():
  b = TrainBatches([_ds(40)], [1.0], 8, 1, seed=0)
  q, p = b.batch(3)
  parts = [b.batch(3, i, 4) for i in range(4)]
  assert [x for qs, _ in parts for x in qs] == q
  assert [x for _, ps in parts for x in ps] == p


def test_weighted_mixture():
  b = TrainBatches([_ds(30, name="a"), _ds(10, name="b")], [0.5, 2.0], 5, 1, seed=0)
  assert b.epoch_size == 15 + 20
  qs = [q for s in range(b.steps_per_epoch) for q in b.batch(s)[0]]
  assert sum(q.startswith("a") for q in qs) == 15
  assert sum(q.startswith("b") for q in qs) == 20
  assert len({q for q in qs if q.startswith("b")}) == 10  # two whole passes over b


def test_missing_hard_negatives_are_filled_and_counted():
  b = TrainBatches([_ds(16, hard=0)], [1.0], 4, 2, seed=0)
  _, p = b.batch(0)
  assert len(p) == 12 and b.filled_negatives == 8


def test_validation_set_dedups_passages():
  ex = _ds(3).examples
  qs, ps, pos = validation_set(ex)
  assert qs == ["d0", "d1", "d2"] and len(ps) == 3 + 6
  assert [ps[i].text for i in pos] == ["dp0", "dp1", "dp2"]


def test_passage_keys_by_id_and_by_text_when_ids_are_absent():
  from dpr_jax.data.examples import passage_keys
  ps = [Passage("t", "x", "7"),      # 0
        Passage("u", "y", "7"),      # 1: id 7 again (another text): one passage
        Passage("t", "x"),           # 2: no id, the text of 0: one passage
        Passage("s", "x"),           # 3: another title: another input
        Passage("s", "x"),           # 4: no id, the text of 3
        Passage("t", "z", "8"),      # 5
        Passage("t", "z", "9"),      # 6: same title and text as 5 under another id: identical input
        Passage("v", "w", "9")]      # 7: id 9, so one passage with 6 and 5
  assert passage_keys(ps).tolist() == [0, 0, 0, 3, 3, 5, 5, 5]
  assert passage_keys([]).tolist() == []


def test_batch_builder_marks_repeated_passages():
  """Weight 3 on 2 examples with no negatives: every batch repeats examples, and the filler
  negatives are the other example's positive. Keys match exactly where the passage ids (or,
  in a file without ids, the texts) match."""
  from dpr_jax.data.examples import passage_keys
  for ids in (True, False):
    exs = [Example(f"q{i}", ("a",), (Passage("t", f"p{i}", f"id{i}" if ids else None),), (), ())
           for i in range(2)]
    b = TrainBatches([Dataset("d", exs, 0)], [3.0], 6, 2, seed=1)
    _, ps = b.batch(0)
    keys = passage_keys(ps)
    same = [[ps[i].text == ps[j].text for j in range(len(ps))] for i in range(len(ps))]
    assert (keys[:, None] == keys[None, :]).tolist() == same
    assert len(set(keys.tolist())) == 2 and len(ps) == 18


def test_global_batch_arrays_carry_the_passage_keys_through_question_groups(minilm_path):
  """The loop's batch holds `p_key`, and question groups move each key with its passage."""
  from dpr_jax.data.examples import global_batch_arrays, passage_keys
  from dpr_jax.models.tokenization import Tokenizer
  tok = Tokenizer(minilm_path, 16, 32)
  exs = [Example("why " * (i % 5 + 1), ("a",), (Passage("t", f"p{i % 3}", None),), (), ())
         for i in range(8)]
  b = TrainBatches([Dataset("d", exs, 0)], [1.0], 8, 1, seed=0)
  _, ps = b.batch(0)
  plain, _ = global_batch_arrays(b, tok, 0, 16, 32, 0)
  assert plain["p_key"].dtype == np.int32 and plain["p_key"].tolist() == passage_keys(ps).tolist()
  grouped, _ = global_batch_arrays(b, tok, 0, 16, 32, 0, question_groups=2)
  # each passage row keeps its key: rows with equal ids have equal keys, in both layouts
  row = lambda x: {tuple(r.tolist()): k for r, k in zip(x["p_ids"], x["p_key"])}
  assert row(grouped) == row(plain) and len(set(row(plain).values())) == 3
