"""`python -m dpr_jax.recipe`: DPR's two rounds on 8 real SQuAD articles with a tiny BERT; a run
cut inside a stage and run again ends where an uncut run ends, without redoing finished stages."""
import gzip
import json
from pathlib import Path

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
  c.eval.at_start = True
  c.recipe = ml_collections.ConfigDict(dict(
      encode_max_length=32, encode_batch_size=64, mine_questions=40, mine_depth=10,
      mined_negatives=2, mix_bm25=True, round2_steps=3, round2_lr=1e-3, round2_warmup_steps=1,
      round2_hard_negatives=1, window_words=20, window_stride=8))
  c.lock()
  return c


class Cut(RuntimeError):
  pass


@pytest.fixture(scope="module")
def whole(small_squad, tmp_path_factory):
  """An uncut run: (config, workdir, recipe.json)."""
  config = _config(small_squad)
  work = tmp_path_factory.mktemp("whole")
  return config, work, recipe_lib.Recipe(config, work).run()


def _lines(path):
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "rt") as f:
    return [json.loads(l) for l in f]


def test_mined_data_mixes_the_bm25_negatives_and_holds_no_answer(whole):
  from dpr_jax.data.answers import has_answer
  _, work, done = whole
  assert list(done) == list(recipe_lib.STAGES)
  mined = _lines(work / "mine" / "train.jsonl.gz")
  bm25 = {r["id"]: r for r in _lines(work / "round1" / "data" / "train.jsonl.gz")}
  assert 0 < len(mined) <= 40
  for rec in mined:
    negs = [c["passage_id"] for c in rec["hard_negative_ctxs"]]
    assert not any(has_answer(rec["answers"], c["text"]) for c in rec["hard_negative_ctxs"])
    assert len(negs) == len(set(negs)) >= 3
    assert negs[2:] == [c["passage_id"] for c in bm25[rec["id"]]["hard_negative_ctxs"]
                        if c["passage_id"] not in negs[:2]]


def test_round2_starts_from_round1s_best_checkpoint(whole):
  """Round 2's step-0 validation (same dev file) equals round 1's last one to the bit: the same
  weights (a fresh start, from `random` with the same seed, would give round 1's step-0 one).
  A round-1 workdir cannot start a model whose tying differs."""
  from dpr_jax.training.loading import build_dual_encoder
  _, work, _ = whole
  evals = lambda n: [l for l in _lines(work / f"round{n}" / "metrics.jsonl") if "eval/loss" in l]
  r1, r2 = evals(1), evals(2)
  assert r1[-1]["step"] == 4 and r2[0]["step"] == 0
  assert r2[0]["eval/loss"] == r1[-1]["eval/loss"] and r2[0]["eval/avg_rank"] == r1[-1]["eval/avg_rank"]
  assert r1[0]["eval/loss"] != r1[-1]["eval/loss"]  # round 1 did move the weights
  with pytest.raises(ValueError, match="tied"):
    build_dual_encoder(str(work / "round1"), pooling="cls", projection_dim=16, tied=True)


def test_evaluation_covers_every_split_and_retriever(whole):
  _, work, _ = whole
  rows = json.loads((work / "results.json").read_text())
  assert sorted(rows) == sorted(f"{s}/{r}" for s in ("dev", "dev2") for r in
                                ("bm25", "dense1", "hybrid1", "dense2", "hybrid2"))
  bm = json.loads((work / "eval" / "dev2-bm25.json").read_text())
  questions = [json.loads(l) for l in open(work / "round1" / "data" / "dev2.qas.jsonl")]
  assert [r["question"] for r in bm] == [q["question"] for q in questions]
  top5 = np.mean([any(c["has_answer"] for c in r["ctxs"][:5]) for r in bm])
  assert rows["dev2/bm25"]["top5"] == pytest.approx(top5)


def test_round2_reads_windows_and_is_scored_by_paragraph(whole):
  """encode2 embeds every 20-word window (stride 8) of each paragraph, counted here from the
  word counts; round 2's results list paragraphs, each once, at its best window's score."""
  from dpr_jax.data.corpus import read_corpus
  from dpr_jax.retrieval.encoding import read_embeddings
  _, work, _ = whole
  split = json.loads((work / "round1" / "data" / "split.json").read_text())
  corpus = read_corpus(Path(split["corpus"]) / "paragraphs.tsv.gz")
  n_words = [len(t.split()) for t in corpus.texts]
  expected = sum(1 if n <= 20 else -(-(n - 20) // 8) + 1 for n in n_words)
  assert expected > 2 * len(corpus.ids)
  ids1, _, _ = read_embeddings(work / "emb1")
  ids2, emb2, _ = read_embeddings(work / "emb2")
  assert len(ids1) == len(corpus.ids) and len(ids2) == expected == len(emb2)
  assert {i.rpartition("~")[0] for i in ids2} == set(corpus.ids)
  for name in ("dense2", "hybrid2"):
    for r in json.loads((work / "eval" / f"dev-{name}.json").read_text()):
      ids = [c["id"] for c in r["ctxs"]]
      assert len(ids) == len(set(ids)) > 0 and set(ids) <= set(corpus.ids)
      s = [c["score"] for c in r["ctxs"]]
      assert s == sorted(s, reverse=True)


def test_a_run_cut_inside_round2_resumes_to_the_uncut_results(whole, tmp_path, monkeypatch):
  """Cut after round 2's step-2 checkpoint; the re-run skips the finished stages, resumes round
  2 from step 2, and ends with the uncut run's results."""
  from dpr_jax.training import checkpoint
  config, work, done = whole
  real_save = checkpoint.Checkpointer.save

  def save_then_cut(self, step, *a, **k):
    real_save(self, step, *a, **k)
    if step == 2 and Path(str(self.last.directory)).parent.name == "round2":
      self.wait()
      raise Cut()

  monkeypatch.setattr(checkpoint.Checkpointer, "save", save_then_cut)
  with pytest.raises(Cut):
    recipe_lib.Recipe(config, tmp_path).run()
  first = json.loads((tmp_path / "recipe.json").read_text())
  assert list(first) == ["round1", "encode1", "mine"]
  mined_at = (tmp_path / "mine" / "train.jsonl.gz").stat().st_mtime_ns
  monkeypatch.setattr(checkpoint.Checkpointer, "save", real_save)
  # `evaluate` alone scores the rounds encoded so far: round 1.
  part = recipe_lib.Recipe(config, tmp_path).run(["evaluate"])["evaluate"]["seconds"]
  assert sorted(json.loads((tmp_path / "results.json").read_text())) == sorted(
      f"{s}/{r}" for s in ("dev", "dev2") for r in ("bm25", "dense1", "hybrid1"))
  again = recipe_lib.Recipe(config, tmp_path).run()
  assert {k: again[k] for k in first} == first and again["evaluate"]["seconds"] > part
  # With every retriever scored, `evaluate` leaves recipe.json as it was.
  assert recipe_lib.Recipe(config, tmp_path).run(["evaluate"]) == again
  assert (tmp_path / "mine" / "train.jsonl.gz").stat().st_mtime_ns == mined_at
  steps = [l["step"] for l in _lines(tmp_path / "round2" / "metrics.jsonl") if "train/loss" in l]
  assert steps == [1, 2, 3]  # step 3 once: resumed at 2, not restarted
  assert json.loads((tmp_path / "results.json").read_text()) == json.loads(
      (work / "results.json").read_text())
  # The same workdir with another config is refused.
  other = config.copy_and_resolve_references()
  with other.unlocked():
    other.recipe.mine_questions = 41
  with pytest.raises(ValueError, match="another config"):
    recipe_lib.Recipe(other, tmp_path).run()


def test_recipe_command_refuses_a_config_without_recipe_and_unknown_stages(capsys):
  from dpr_jax import cli
  assert cli.recipe(["--config", "tiny.py", "--workdir", "w"]) == 2
  assert "expected a `recipe` section" in capsys.readouterr().err
  assert cli.recipe(["--config", "squad.py", "--workdir", "w", "--stages", "round3"]) == 2
  assert "round3" in capsys.readouterr().err
  assert cli.recipe(["--config", "squad.py", "--workdir", "w",
                     "--config.data.prepare="]) == 2
  assert "expected data.prepare 'squad'" in capsys.readouterr().err
  assert cli.recipe(["--config", "squad.py", "--workdir", "w",
                     "--config.recipe.window_stride=101"]) == 2
  assert "expected recipe.window_stride <= window_words" in capsys.readouterr().err


def test_recipe_config_change_is_refused_then_overridden_and_recorded(tmp_path):
  """recipe-config.json: another global batch is refused naming the field; with
  `train.allow_config_change` the new config is recorded, so the next run needs no flag;
  run-length, logging and validation fields stay free."""
  from dpr_jax.training import harness
  config = _config(tmp_path / "squad")
  recipe_lib.Recipe(config, tmp_path / "w").check_workdir()

  def changed(**fields):
    c = config.copy_and_resolve_references()
    with c.unlocked():
      for k, v in fields.items():
        section, name = k.split("__")
        c[section][name] = v
    return c
  other = changed(train__global_batch=8)
  with pytest.raises(harness.ConfigChangeError, match=r"train\.global_batch: recorded 16, now 8"):
    recipe_lib.Recipe(other, tmp_path / "w").check_workdir()
  recipe_lib.Recipe(changed(train__global_batch=8, train__allow_config_change=True),
                    tmp_path / "w").check_workdir()
  recorded = json.loads((tmp_path / "w" / "recipe-config.json").read_text())
  assert recorded["train"]["global_batch"] == 8
  recipe_lib.Recipe(other, tmp_path / "w").check_workdir()  # no flag needed any more
  recipe_lib.Recipe(changed(train__global_batch=8, train__max_steps=9, train__log_every=3,
                            eval__every=5, recipe__round2_steps=7),
                    tmp_path / "w").check_workdir()
