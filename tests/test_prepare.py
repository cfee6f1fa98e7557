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
