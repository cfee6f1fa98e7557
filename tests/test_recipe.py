"""`python -m dpr_jax.recipe`: DPR's two rounds on 8 real SQuAD articles with a tiny BERT; a run
cut in a stage and run again ends where an uncut run ends, without redoing finished stages."""
import gzip
import json

import numpy as np
import pytest

from dpr_jax.tools import recipe as recipe_lib


@pytest.fixture(scope="module")
def small_squad(squad_dir, tmp_path_factory):
  """The corpus and questions of 8 articles of the official training JSON."""
  from dpr_jax.tools.prepare import build_squad_corpus
  out = tmp_path_factory.mktemp("squad8")
  with gzip.open(squad_dir / "train-v1.1.json.gz", "rt") as f:
    articles = json.load(f)["data"][:8]
  (out / "train.json").write_text(json.dumps({"version": "1.1", "data": articles}))
  build_squad_corpus(out, out / "train.json")
  return out


def _config(squad):
  import ml_collections
  from dpr_jax.configs import tiny
  c = tiny.get_config()
  c.data.prepare = "squad"
  c.data.prepare_args = ml_collections.ConfigDict(dict(
      squad_dir=str(squad), num_val_articles=1, val_splits=2, num_hard_negatives=1))
  c.train.max_steps, c.train.save_every, c.train.epochs = 4, 2, 1
  c.recipe = ml_collections.ConfigDict(dict(
      encode_max_length=32, encode_batch_size=64, mine_questions=40, mine_depth=10,
      mined_negatives=2, mix_bm25=True, round2_steps=3, round2_lr=1e-3, round2_warmup_steps=1,
      round2_hard_negatives=1))
  c.lock()
  return c


class Cut(RuntimeError):
  pass


def test_recipe_runs_both_rounds_and_resumes_where_it_was_cut(small_squad, tmp_path,
                                                              monkeypatch):
  from dpr_jax.data.corpus import read_corpus
  from dpr_jax.data.answers import has_answer
  from dpr_jax.data import resources
  config = _config(small_squad)
  whole = recipe_lib.Recipe(config, tmp_path / "whole").run()
  assert list(whole) == list(recipe_lib.STAGES)

  # The mined data: round-1 negatives first, then the BM25 ones; none holds an answer.
  mined = [json.loads(l) for l in gzip.open(tmp_path / "whole" / "mine" / "train.jsonl.gz", "rt")]
  bm25 = {json.loads(l)["id"]: json.loads(l) for l in
          gzip.open(tmp_path / "whole" / "round1" / "data" / "train.jsonl.gz", "rt")}
  assert 0 < len(mined) <= 40
  for rec in mined:
    negs = [c["passage_id"] for c in rec["hard_negative_ctxs"]]
    assert not any(has_answer(rec["answers"], c["text"]) for c in rec["hard_negative_ctxs"])
    assert len(negs) == len(set(negs)) >= 3
    assert negs[2:] == [c["passage_id"] for c in bm25[rec["id"]]["hard_negative_ctxs"]
                        if c["passage_id"] not in negs[:2]]
  # Round 2 starts from round 1's best checkpoint: its model encodes as round 1's did.
  from dpr_jax.training.loading import build_dual_encoder
  from dpr_jax.retrieval.encoding import read_embeddings
  from dpr_jax.models.tokenization import Tokenizer
  ids, emb, _ = read_embeddings(tmp_path / "whole" / "emb1")
  corpus = read_corpus(small_squad / "paragraphs.tsv.gz", limit=8)
  r1 = build_dual_encoder(str(tmp_path / "whole" / "round1"), pooling="cls", projection_dim=16,
                          normalize=False)
  t = Tokenizer(str(resources.minilm_path()), passage_max_length=32)
  p = t.passages(corpus.titles, corpus.texts, max_length=32, pad_to_max=False)
  got = np.asarray(r1.encode_passages(p["input_ids"], p["attention_mask"]))
  rows_of = [ids.index(pid) for pid in corpus.ids]
  np.testing.assert_allclose(got, emb[rows_of].astype(np.float32), atol=2e-3)
  with pytest.raises(ValueError, match="tied"):
    build_dual_encoder(str(tmp_path / "whole" / "round1"), pooling="cls", projection_dim=16,
                       tied=True)

  # Evaluation: every split, every retriever, DPR's top-k.
  rows = json.loads((tmp_path / "whole" / "results.json").read_text())
  assert sorted(rows) == sorted(f"{s}/{r}" for s in ("dev", "dev2") for r in
                                ("bm25", "dense1", "hybrid1", "dense2", "hybrid2"))
  bm = json.loads((tmp_path / "whole" / "eval" / "dev2-bm25.json").read_text())
  top5 = np.mean([any(c["has_answer"] for c in r["ctxs"][:5]) for r in bm])
  assert rows["dev2/bm25"]["top5"] == pytest.approx(top5)

  # Cut in round2, then run again: the finished stages are not redone, the result is the same.
  cut = tmp_path / "cut"
  real = recipe_lib.Recipe.round2
  monkeypatch.setattr(recipe_lib.Recipe, "round2", lambda self: (_ for _ in ()).throw(Cut()))
  with pytest.raises(Cut):
    recipe_lib.Recipe(config, cut).run()
  first = json.loads((cut / "recipe.json").read_text())
  assert list(first) == ["round1", "encode1", "mine"]
  mined_at = (cut / "mine" / "train.jsonl.gz").stat().st_mtime_ns
  monkeypatch.setattr(recipe_lib.Recipe, "round2", real)
  again = recipe_lib.Recipe(config, cut).run()
  assert {k: again[k] for k in first} == first
  assert (cut / "mine" / "train.jsonl.gz").stat().st_mtime_ns == mined_at
  assert json.loads((cut / "results.json").read_text()) == rows


def test_recipe_command_refuses_a_config_without_recipe_and_unknown_stages(capsys):
  from dpr_jax import cli
  assert cli.recipe(["--config", "tiny.py", "--workdir", "w"]) == 2
  assert "expected a `recipe` section" in capsys.readouterr().err
  assert cli.recipe(["--config", "squad.py", "--workdir", "w", "--stages", "round3"]) == 2
  assert "round3" in capsys.readouterr().err
