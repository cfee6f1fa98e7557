"""The embedded demo slice (dpr_jax/demo_data): what it holds, that the demo reads it when no
SQuAD is found, and that `prepare squad-slice` builds it."""
import gzip
import hashlib
import json
import logging

import pytest

from dpr_jax.data import resources, squad_records
from dpr_jax.tools import prepare, squad_slice


def _load(path):
  with gzip.open(path, "rt", encoding="utf-8") as f:
    return json.load(f)


@pytest.fixture(scope="module")
def packaged():
  path = resources.slice_json()
  return path, _load(path), json.loads((path.parent / "slice.json").read_text())


def _questions(squad):
  """(title, qa) of every question, read directly from the SQuAD JSON."""
  return [(a["title"].replace("_", " "), qa) for a in squad["data"] for p in a["paragraphs"]
          for qa in p["qas"]]


def test_packaged_slice_is_small_attributed_and_as_recorded(packaged):
  """A few MB; CC BY-SA 4.0 attribution beside it; the counts slice.json records are those of
  the file; every article has a question; the held-out articles hold the 300 validation
  questions."""
  path, squad, record = packaged
  assert path.stat().st_size < 4_000_000
  license_text = (path.parent / "LICENSE").read_text()
  assert "CC BY-SA 4.0" in license_text and "Rajpurkar" in license_text
  qs = _questions(squad)
  pars = [p for a in squad["data"] for p in a["paragraphs"]]
  assert (record["articles"], record["paragraphs"], record["questions"]) == (
      len(squad["data"]), len(pars), len(qs))
  assert 3000 <= len(pars) <= 8000 and len(qs) >= 4000
  assert {t for t, _ in qs} == {a["title"].replace("_", " ") for a in squad["data"]}
  held = set(record["val_articles"])
  assert len(held) == 40 and sum(t in held for t, _ in qs) == record["val_questions"] == 300


def test_demo_prepares_the_slice_when_no_squad_is_found(tmp_path, monkeypatch, caplog):
  """With an empty data folder and no ./data: the demo config's prepare step says so in one log
  line, builds the slice's corpus into the workdir, and holds out the 40 articles slice.json
  names (the same draw as on the full data): 300 validation questions from them, 3,000
  training questions from the others."""
  from dpr_jax.configs import demo
  from dpr_jax.training.data_files import prepared_files
  (tmp_path / "empty").mkdir()
  monkeypatch.setenv(resources.DATA_ENV, str(tmp_path / "empty"))
  monkeypatch.chdir(tmp_path)
  record = json.loads((resources.slice_json().parent / "slice.json").read_text())
  with caplog.at_level(logging.INFO, logger="dpr_jax"):
    train_files, dev_file = prepared_files(demo.get_config().data, tmp_path / "work")
  said = [r.getMessage() for r in caplog.records if "embedded demo slice" in r.getMessage()]
  assert len(said) == 1 and "python -m dpr_jax.prepare squad --download" in said[0]
  split = json.loads((tmp_path / "work" / "data" / "split.json").read_text())
  assert split["val_articles"] == record["val_articles"]
  title = {q["id"]: t for t, q in _questions(_load(resources.slice_json()))}
  with gzip.open(train_files[0], "rt") as f:
    train = [json.loads(l)["id"] for l in f]
  with gzip.open(dev_file, "rt") as f:
    dev = [json.loads(l)["id"] for l in f]
  held = set(record["val_articles"])
  assert len(train) == 3000 and not any(title[i] in held for i in train)
  assert len(dev) == 300 and all(title[i] in held for i in dev)


def test_squad_config_does_not_fall_back_to_the_slice(tmp_path, monkeypatch, capsys):
  """configs/squad.py and `prepare squad` with no SQuAD: an error naming the places looked in
  and the download command (one `error:` line, status 2), not the slice."""
  from dpr_jax import cli
  from dpr_jax.configs import squad
  (tmp_path / "empty").mkdir()
  monkeypatch.setenv(resources.DATA_ENV, str(tmp_path / "empty"))
  monkeypatch.chdir(tmp_path)
  with pytest.raises(FileNotFoundError, match="python -m dpr_jax.download squad"):
    prepare.prepare_squad(tmp_path / "out", **dict(squad.get_config().data.prepare_args))
  assert cli.prepare(["squad", "--out", "out"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: SQuAD not found in ")
  assert str(tmp_path / "data" / "squad-official") in err[0]


def _hand_squad():
  """Six articles; article k has k + 1 paragraphs, each with one question whose answer is a word
  of its own paragraph only."""
  arts = []
  for k in range(6):
    pars = [{"context": f"Article {k} paragraph {j} tells of zz{k}x{j} and common words.",
             "qas": [{"id": f"q{k}-{j}", "question": f"What of article {k} paragraph {j}?",
                      "answers": [{"answer_start": 0, "text": f"zz{k}x{j}"}]}]}
            for j in range(k + 1)]
    arts.append({"title": f"Art_{k}", "paragraphs": pars})
  return {"version": "1.1", "data": arts}


def test_select_on_a_hand_worked_file(tmp_path):
  """Article 0 kept whole; 2 held-out articles (split_articles' draw over all six titles) give
  the validation questions, at least one each; every article keeps a question; each question
  keeps its paragraph and one BM25 hard negative without its answer; contexts and questions are
  copied unchanged; prepare squad on the slice holds out the same two articles."""
  src = tmp_path / "train.json"
  src.write_text(json.dumps(_hand_squad()))
  squad, record = squad_slice.select(src, seed=0, num_val_articles=2, train_questions=4,
                                     val_questions=2, whole_articles=1, hard_negatives=1)
  held = squad_records.split_articles([f"Art {k}" for k in range(6)], 2, 0)[0]
  assert set(record["val_articles"]) == held
  qs = _questions(squad)
  assert {t for t, _ in qs} == {f"Art {k}" for k in range(6)}
  assert sum(t in held for t, _ in qs) == 2 + ("Art 0" in held)
  assert sum(t not in held and t != "Art 0" for t, _ in qs) == 4
  full = {p["context"]: p for a in _hand_squad()["data"] for p in a["paragraphs"]}
  for a in squad["data"]:
    for p in a["paragraphs"]:
      assert all(qa in full[p["context"]]["qas"] for qa in p["qas"])
  contexts = {p["context"] for a in squad["data"] for p in a["paragraphs"]}
  for _, qa in qs:   # the positive is there, and a paragraph that does not hold the answer
    k, j = qa["id"][1:].split("-")
    assert f"Article {k} paragraph {j} tells of zz{k}x{j} and common words." in contexts
  assert len(contexts) > len(qs)
  squad_slice.write(tmp_path / "out", squad, record, "s.json.gz")
  first = (tmp_path / "out" / "s.json.gz").read_bytes()
  squad_slice.write(tmp_path / "out", squad, record, "s.json.gz")
  assert (tmp_path / "out" / "s.json.gz").read_bytes() == first   # no time stamp
  prepare.build_squad_corpus(tmp_path / "prep", tmp_path / "out" / "s.json.gz")
  stats = prepare.prepare_squad(tmp_path / "prep2", squad_dir=tmp_path / "prep", seed=0,
                                num_val_articles=2, num_hard_negatives=1)
  assert set(stats["val_articles"]) == held


@pytest.mark.slow
def test_prepare_squad_slice_rebuilds_the_packaged_slice(squad_dir, packaged, tmp_path):
  """From the training file it was built from (its sha256 in slice.json), the documented command
  gives the packaged bytes; from another file (the slice itself, on a machine without the full
  data), a slice of that file whose every paragraph and question is one of the file's."""
  path, _, record = packaged
  src = squad_dir / "train-v1.1.json.gz"
  same = hashlib.sha256(src.read_bytes()).hexdigest() == record["source"]["sha256"]
  args = [] if same else ["--max_train_questions", "600", "--max_val_questions", "60"]
  assert prepare.main(["squad-slice", "--train_json", str(src), "--out", str(tmp_path), *args]) == 0
  built = tmp_path / resources.SLICE_JSON
  if same:
    assert built.read_bytes() == path.read_bytes()
    assert json.loads((tmp_path / "slice.json").read_text()) == record
    return
  source = {p["context"]: p["qas"] for a in _load(src)["data"] for p in a["paragraphs"]}
  new = _load(built)
  for a in new["data"]:
    for p in a["paragraphs"]:
      assert all(qa in source[p["context"]] for qa in p["qas"])
  assert sum(1 for _ in _questions(new)) < sum(len(q) for q in source.values())
