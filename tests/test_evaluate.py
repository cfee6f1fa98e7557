import json

import pytest

from dpr_jax.retrieval.evaluate import evaluate, format_table, main


def _r(answers, texts, ids=None, gold=None):
  ctxs = [{"id": ids[i] if ids else str(i), "title": "", "text": t, "score": 0.0} for i, t in enumerate(texts)]
  r = {"question": "q", "answers": answers, "ctxs": ctxs}
  if gold is not None:
    r["positive_pids"] = gold
  return r


def test_topk_recall_mrr_by_hand():
  results = [
      _r(["Paris"], ["in London", "to Paris, France", "x"], ["a", "b", "c"], ["b"]),
      _r(["1901"], ["born 1901.", "no", "no"], ["d", "e", "f"], ["e", "f"]),
      _r(["Röntgen"], ["Wilhelm Ro\u0308ntgen", "x", "y"], ["g", "h", "i"], ["z"]),
  ]
  m = evaluate(results, ks=(1, 2, 3))
  assert m["top1"] == pytest.approx(2 / 3)  # q1's answer is at rank 2
  assert m["top2"] == m["top3"] == 1.0
  assert m["recall@1"] == pytest.approx(0.0)
  assert m["recall@2"] == pytest.approx((1 + 0.5 + 0) / 3)
  assert m["recall@3"] == pytest.approx((1 + 1 + 0) / 3)
  assert m["mrr@3"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
  assert "top-k accuracy" in format_table(m)


def test_regex_mode_and_cli(tmp_path):
  results = [_r(["20\\s?,?\\s?(32|40)0\\s?-?\\s?f(ee|oo)t"], ["no", "it is 20,320 feet high"])]
  f = tmp_path / "r.json"
  f.write_text(json.dumps(results))
  main([str(f), "--match", "regex", "--k", "1,2"])
  m = json.loads((tmp_path / "r.metrics.json").read_text())
  assert (m["top1"], m["top2"]) == (0.0, 1.0)


def test_bad_results_named():
  with pytest.raises(ValueError, match=r"record 0: expected fields"):
    evaluate([{"question": "q"}])


@pytest.mark.parametrize("results,kw,match", [
    ([_r(["x"], ["a x"])], {"ks": (1, 2)}, "depth 1, found 2"),
    ([_r([], ["a x"])], {"ks": (1,)}, "expected answers"),
    ([_r(["x"], ["a x"], gold=["0"]), _r(["x"], ["b"])], {"ks": (1,)}, "record 1: .*positive_pids"),
    ([_r(["x"], ["a x"])], {"ks": (1,), "require_recall": True}, "record 0: .*positive_pids"),
    ([{"question": "q", "answers": ["x"], "ctxs": [{"id": "1"}]}],
     {"ks": (1,), "match": "regex", "recompute": True}, "--no_text"),
    ([], {}, "found none"),
])
def test_unmeasurable_metrics_are_errors(results, kw, match):
  with pytest.raises(ValueError, match=match):
    evaluate(results, **kw)
