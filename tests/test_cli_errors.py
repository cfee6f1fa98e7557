"""Every bad input of docs/errors.md, run through the command line in-process (`dpr_jax.cli`):
one `error:` line on stderr naming the file (or flag), exit status 2, no traceback."""
import gzip
import itertools
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from dpr_jax import cli

PASSAGES = [("p1", "the river flows to the sea", "River"),
            ("p2", "paris is the capital of france", "Paris"),
            ("p3", "the king and the queen of music", "Music"),
            ("p4", "mountains rise above the city", "City"),
            ("p5", "science explains war and peace", "Science"),
            ("p6", "alpha beta gamma delta", "Greek")]


def _tsv(path, rows, header="id\ttext\ttitle"):
  path.write_text("".join(f"{r}\n" for r in ([header] if header is not None else []) + rows))
  return path


def _bert_dir(d: Path, seed: int, minilm: Path, model_type: str = "bert") -> Path:
  """A random 1-layer BERT saved as a Hugging Face folder (MiniLM's tokenizer)."""
  from flax import nnx
  from safetensors.numpy import save_file
  from dpr_jax.models.bert import Bert, BertConfig
  from dpr_jax.models.hf import bert_tensors
  cfg = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=32, max_position_embeddings=64)
  d.mkdir(parents=True)
  (d / "config.json").write_text(json.dumps({**cfg.to_hf(), "model_type": model_type}))
  save_file(bert_tensors(Bert(cfg, rngs=nnx.Rngs(seed))), str(d / "model.safetensors"))
  for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    if (minilm / f).is_file():
      shutil.copy(minilm / f, d / f)
  return d


def _put(F, name: str, text: str) -> Path:
  """A small bad input file in the fixture folder."""
  (F.dir / name).write_text(text)
  return F.dir / name


@pytest.fixture(scope="module")
def F(tmp_path_factory, minilm_path):
  """The fixture files, made once: `F.name` is a path."""
  d = tmp_path_factory.mktemp("cli")

  class Files:
    pass
  f = Files()
  f.dir = d
  f.missing = d / "missing.json"
  f.empty = d / "empty.json"
  f.empty.write_text("")
  f.text = d / "notes.txt"
  f.text.write_text("just some words\n")
  rows = [f"{i}\t{t}\t{ti}" for i, t, ti in PASSAGES]
  f.psgs = _tsv(d / "psgs.tsv", rows)
  f.psgs2 = _tsv(d / "psgs2.tsv", rows[:5])
  f.header_only = _tsv(d / "header.tsv", [])
  f.columns = _tsv(d / "columns.tsv", rows[:2] + ["p9\tonly two"])
  f.dup = _tsv(d / "dup.tsv", rows[:2] + [rows[0]])
  f.empty_text = _tsv(d / "emptytext.tsv", rows[:2] + ["p9\t \tT"])
  f.latin1 = d / "latin1.tsv"
  f.latin1.write_bytes("id\ttext\ttitle\np1\tcaf\xe9 au lait\tT\n".encode("latin-1"))
  f.truncated_gz = d / "psgs.tsv.gz"
  many = "".join(f"q{i}\tpassage number {i}\tT\n" for i in range(2000))
  f.truncated_gz.write_bytes(gzip.compress(("id\ttext\ttitle\n" + many).encode())[:-20])
  f.questions = d / "q.jsonl"
  f.questions.write_text('{"question": "capital of france", "answers": ["paris"]}\n'
                         '{"question": "who rules music", "answers": ["king"]}\n')
  f.no_answers = d / "noans.jsonl"
  f.no_answers.write_text('{"question": "capital of france"}\n')
  f.q_bad_json = d / "qbad.jsonl"
  f.q_bad_json.write_text('{"question": "a", "answers": ["b"]}\n{question: c}\n')
  f.q_answers_int = d / "qint.jsonl"
  f.q_answers_int.write_text('{"question": "a", "answers": 5}\n')
  f.q_csv_str = d / "q.qa.csv"
  f.q_csv_str.write_text("who rules music\t'king'\n")
  results = [{"question": "capital of france", "answers": ["paris"], "ctxs": [
      {"id": p, "title": ti, "text": t, "score": 1.0, "has_answer": p == "p2"}
      for p, t, ti in PASSAGES[:3]]}]
  f.results = d / "results.json"
  f.results.write_text(json.dumps(results))
  f.results_no_text = d / "results_no_text.json"
  f.results_no_text.write_text(json.dumps(
      [{**r, "ctxs": [{"id": c["id"], "score": 1.0, "has_answer": False} for c in r["ctxs"]]}
       for r in results]))
  f.results_other_q = d / "results_other.json"
  f.results_other_q.write_text(json.dumps([{**r, "question": "capital of spain"} for r in results]))
  f.results_no_answers = d / "results_noans.json"
  f.results_no_answers.write_text(json.dumps([{**r, "answers": []} for r in results]))
  f.results_unknown_id = d / "results_unknown.json"
  f.results_unknown_id.write_text(json.dumps(
      [{**r, "ctxs": r["ctxs"] + [{"id": "zz", "text": "x", "title": ""}]} for r in results]))
  f.results_gz = d / "results.json.gz"
  f.results_gz.write_bytes(gzip.compress(f.results.read_bytes() * 20)[:-30])
  f.empty_list = d / "emptylist.json"
  f.empty_list.write_text("[]")
  f.train_records = d / "train.jsonl"
  f.train_records.write_text(json.dumps({"question": "q", "positive_ctxs": [{"text": "t"}]}))
  f.no_question = d / "noq.jsonl"
  f.no_question.write_text(json.dumps({"answers": [], "positive_ctxs": [{"text": "t"}]}) + "\n")
  f.no_positives = d / "nopos.jsonl"
  f.no_positives.write_text(json.dumps({"question": "q", "answers": []}) + "\n")
  f.train_gz = d / "train.jsonl.gz"
  f.train_gz.write_bytes(gzip.compress((f.train_records.read_text() + "\n").encode() * 200)[:-25])
  # Outputs of earlier runs: a failing run must leave them as they are.
  (d / "out.json").write_text("[]")
  (d / "m.jsonl").write_text("{}\n")
  (d / "results.metrics.json").write_text("{}")
  f.bert = _bert_dir(d / "bert", 0, minilm_path)
  f.bert2 = _bert_dir(d / "bert2", 1, minilm_path)
  f.gpt = _bert_dir(d / "gpt", 0, minilm_path, model_type="gpt2")
  f.bad_workdir = d / "bad_workdir"
  f.bad_workdir.mkdir()
  (f.bad_workdir / "model.json").write_text("{not json")
  f.no_spec = d / "no_spec"
  f.no_spec.mkdir()
  # Embeddings of f.psgs by f.bert, and their flat index (built by a first retrieval).
  f.emb = d / "emb"
  assert cli.encode(["--model", str(f.bert), "--passages", str(f.psgs), "--out", str(f.emb),
                     "--chunk_size", "4", "--batch_size", "2", "--max_length", "16"]) == 0
  assert cli.retrieve(["--model", str(f.bert), "--embeddings", str(f.emb), "--passages",
                       str(f.psgs), "--questions", str(f.questions), "--k", "2",
                       "--out", str(d / "ok.json")]) == 0
  return f


def emb_copy(F, name, damage):
  """A copy of the embeddings folder with `damage(folder)` applied."""
  out = F.dir / f"emb_{name}"
  if not out.exists():
    shutil.copytree(F.emb, out)
    damage(out)
  return out


def _garble(path):
  path.write_bytes(b"\x93NUMPY garbage" if path.suffix == ".npy" else b"garbage\x00")


def dense(F, emb, *extra, model=None):
  return ["--model", str(model or F.bert), "--embeddings", str(emb), "--passages", str(F.psgs),
          "--questions", str(F.questions), "--k", "2", "--out", str(F.dir / "out.json"), *extra]


def bm25(F, questions, *extra):
  return ["--retriever", "bm25", "--passages", str(F.psgs), "--questions", str(questions),
          "--k", "2", "--out", str(F.dir / "out.json"), *extra]


def encode(F, passages, *extra, model=None, out="enc"):
  return ["--model", str(model or F.bert), "--passages", str(passages), "--out",
          str(F.dir / out), "--max_length", "16", *extra]


_RUNS = itertools.count()


def train(F, *extra, config="tiny"):
  return ["--config", config, "--workdir", str(F.dir / f"wd{next(_RUNS)}"), *extra]


def data(path):
  return f"--config.data.train_files={path}"


# name -> (tool, argv from the fixture files, a regular expression the error line must match)
CASES = {
    "config_missing": ("train", lambda F: train(F, config=str(F.dir / "nope.py")), "nope.py"),
    "config_override_misspelt": ("train", lambda F: train(F, "--config.optim.lrr=1"),
                                 "optim.lrr"),
    "config_override_bad_type": ("train", lambda F: train(F, "--config.train.log_every=x"),
                                 "train.log_every"),
    "config_dtype": ("train", lambda F: train(F, "--config.model.dtype=float16"), "model.dtype"),
    "config_pooling": ("train", lambda F: train(F, "--config.model.pooling=max"),
                       "model.pooling"),
    "config_similarity": ("train", lambda F: train(F, "--config.loss.similarity=l2"),
                          "loss.similarity"),
    "config_log_every_0": ("train", lambda F: train(F, "--config.train.log_every=0"),
                           "train.log_every"),
    "config_global_batch_0": ("train", lambda F: train(F, "--config.train.global_batch=0"),
                              "train.global_batch"),
    "train_file_missing": ("train", lambda F: train(F, data(F.missing)), "missing.json"),
    "train_file_empty": ("train", lambda F: train(F, data(F.empty)), "empty.json"),
    "train_file_not_json": ("train", lambda F: train(F, data(F.text)), "notes.txt: line 1"),
    "train_file_truncated_gz": ("train", lambda F: train(F, data(F.train_gz)),
                                r"train.jsonl.gz: line \d+: expected a complete gzip stream"),
    "train_record_no_question": ("train", lambda F: train(F, data(F.no_question)),
                                 "noq.jsonl: record 1"),
    "train_record_no_positives": ("train", lambda F: train(F, data(F.no_positives)),
                                  "nopos.jsonl: record 1"),
    "reader_config_missing": ("reader_train", lambda F: train(F, config="reader_nope"),
                              "reader_nope"),
    "reader_results_missing": ("reader_train", lambda F: train(
        F, f"--config.data.train_results={F.missing}", "--config.data.passages=",
        config="reader_squad"), "missing.json"),
    "scaling_config_missing": ("scaling", lambda F: train(F, config="nope"), "nope"),
    "passages_missing": ("encode", lambda F: encode(F, F.missing), "missing.json"),
    "passages_empty_file": ("encode", lambda F: encode(F, F.empty), "empty.json: line 1"),
    "passages_empty_corpus": ("encode", lambda F: encode(F, F.header_only), "header.tsv: line 2"),
    "passages_wrong_columns": ("encode", lambda F: encode(F, F.columns), "columns.tsv: line 4"),
    "passages_duplicate_id": ("encode", lambda F: encode(F, F.dup), "dup.tsv: line 4"),
    "passages_empty_text": ("encode", lambda F: encode(F, F.empty_text), "emptytext.tsv: line 4"),
    "passages_not_utf8": ("encode", lambda F: encode(F, F.latin1), "latin1.tsv: line 2"),
    "passages_truncated_gz": ("encode", lambda F: encode(F, F.truncated_gz),
                              r"psgs.tsv.gz: line \d+: expected a complete gzip stream"),
    "encode_shard_id": ("encode", lambda F: encode(F, F.psgs, "--shard_id", "2",
                                                   "--num_shards", "2"), "--shard_id"),
    "encode_batch_size_0": ("encode", lambda F: encode(F, F.psgs, "--batch_size", "0"),
                            "--batch_size"),
    "encode_chunk_size_0": ("encode", lambda F: encode(F, F.psgs, "--chunk_size", "0"),
                            "--chunk_size"),
    "model_missing": ("encode", lambda F: encode(F, F.psgs, model=F.dir / "nomodel"), "nomodel"),
    "model_not_bert": ("encode", lambda F: encode(F, F.psgs, model=F.gpt), "gpt2"),
    "model_json_corrupt": ("encode", lambda F: encode(F, F.psgs, model=F.bad_workdir),
                           "model.json"),
    "encode_into_other_models_folder": ("encode", lambda F: encode(F, F.psgs, model=F.bert2,
                                                                   out="emb"), "emb"),
    "questions_missing": ("retrieve", lambda F: bm25(F, F.missing), "missing.json"),
    "questions_empty": ("retrieve", lambda F: bm25(F, F.empty), "empty.json"),
    "questions_not_json": ("retrieve", lambda F: bm25(F, F.q_bad_json), "qbad.jsonl: line 2"),
    "questions_answers_not_list": ("retrieve", lambda F: bm25(F, F.q_answers_int),
                                   "qint.jsonl: line 1"),
    "questions_csv_answers_not_list": ("retrieve", lambda F: bm25(F, F.q_csv_str),
                                       "q.qa.csv: line 1"),
    "retrieve_bad_index_kind": ("retrieve", lambda F: bm25(F, F.questions, "--index", "ivf"),
                                "--index"),
    "retrieve_k_0": ("retrieve", lambda F: bm25(F, F.questions, "--k", "0"), "--k"),
    "retrieve_dense_without_embeddings": ("retrieve", lambda F: bm25(F, F.questions,
                                                                     "--retriever", "dense"),
                                          "--embeddings"),
    "embeddings_missing": ("retrieve", lambda F: dense(F, F.dir / "noemb"), "noemb"),
    "embeddings_other_corpus": ("retrieve", lambda F: dense(F, F.emb)[:4] + [
        "--passages", str(F.psgs2)] + dense(F, F.emb)[6:], "emb"),
    "embeddings_other_model": ("retrieve", lambda F: dense(F, F.emb, model=F.bert2), "emb"),
    "embeddings_part_missing": ("retrieve", lambda F: dense(F, emb_copy(
        F, "nopart", lambda d: [shutil.rmtree(d / "index-flat"),
                                (d / "part-000-00001.npy").unlink()])), "part-000-00001.npy"),
    "embeddings_part_corrupt": ("retrieve", lambda F: dense(F, emb_copy(
        F, "badpart", lambda d: [shutil.rmtree(d / "index-flat"),
                                 _garble(d / "part-000-00000.npy")])), "part-000-00000.npy"),
    "manifest_missing": ("retrieve", lambda F: dense(F, emb_copy(
        F, "nomanifest", lambda d: [shutil.rmtree(d / "index-flat"),
                                    (d / "encode-000-of-001.json").unlink()])), "emb_nomanifest"),
    "manifest_corrupt": ("retrieve", lambda F: dense(F, emb_copy(
        F, "badmanifest", lambda d: [shutil.rmtree(d / "index-flat"),
                                     _garble(d / "encode-000-of-001.json")])),
                         "encode-000-of-001.json"),
    "index_faiss_missing": ("retrieve", lambda F: dense(F, emb_copy(
        F, "noindex", lambda d: (d / "index-flat" / "index.faiss").unlink())), "index.faiss"),
    "index_faiss_corrupt": ("retrieve", lambda F: dense(F, emb_copy(
        F, "badindex", lambda d: _garble(d / "index-flat" / "index.faiss"))), "index.faiss"),
    "index_json_corrupt": ("retrieve", lambda F: dense(F, emb_copy(
        F, "badindexjson", lambda d: _garble(d / "index-flat" / "index.json"))), "index.json"),
    "results_missing": ("evaluate", lambda F: [str(F.missing)], "missing.json"),
    "results_empty_file": ("evaluate", lambda F: [str(F.empty)], "empty.json"),
    "results_not_json": ("evaluate", lambda F: [str(F.text)], "notes.txt: line 1"),
    "results_truncated_gz": ("evaluate", lambda F: [str(F.results_gz)],
                             r"results.json.gz: line \d+: expected a complete gzip stream"),
    "results_not_results": ("evaluate", lambda F: [str(F.train_records)], "train.jsonl"),
    "results_empty_list": ("evaluate", lambda F: [str(F.empty_list)], "emptylist.json"),
    "evaluate_k_0": ("evaluate", lambda F: [str(F.results), "--k", "0"], "--k"),
    "evaluate_k_negative": ("evaluate", lambda F: [str(F.results), "--k=-5"], "--k"),
    "evaluate_k_beyond_depth": ("evaluate", lambda F: [str(F.results), "--k", "1,5"],
                                "results.json"),
    "evaluate_regex_without_text": ("evaluate", lambda F: [str(F.results_no_text), "--match",
                                                           "regex"], "results_no_text.json"),
    "evaluate_recall_without_gold": ("evaluate", lambda F: [str(F.results), "--recall"],
                                     "results.json"),
    "evaluate_no_answers": ("evaluate", lambda F: [str(F.results_no_answers)],
                            "results_noans.json"),
    "qrels_missing_column": ("evaluate", lambda F: [str(F.results), "--qrels", str(_put(
        F, "qrels_short.txt", "q1 0 p1 1\nq1 0 p2\n"))], "qrels_short.txt: line 2"),
    "qrels_beir_missing_column": ("evaluate", lambda F: [str(F.results), "--qrels", str(_put(
        F, "qrels_beir.tsv", "query-id\tcorpus-id\tscore\nq1\tp1\t1\nq1\tp2\n"))],
        "qrels_beir.tsv: line 3"),
    "qrels_duplicate": ("evaluate", lambda F: [str(F.results), "--qrels", str(_put(
        F, "qrels_dup.txt", "q1 0 p1 1\nq2 0 p1 1\nq1 0 p1 2\n"))], "qrels_dup.txt: line 3"),
    "qrels_bad_relevance": ("evaluate", lambda F: [str(F.results), "--qrels", str(_put(
        F, "qrels_rel.txt", "q1 0 p1 high\n"))], "qrels_rel.txt: line 1"),
    "run_missing_column": ("evaluate", lambda F: [str(_put(
        F, "run_short.trec", "q1 Q0 p1 1 2.0 t\nq1 Q0 p2 2 1.0\n")), "--qrels", str(_put(
            F, "qrels_a.txt", "q1 0 p1 1\n"))], "run_short.trec: line 2"),
    "run_duplicate": ("evaluate", lambda F: [str(_put(
        F, "run_dup.trec", "q1 Q0 p1 1 2.0 t\nq1 Q0 p2 2 1.0 t\nq1 Q0 p1 3 0.5 t\n")),
        "--qrels", str(_put(F, "qrels_b.txt", "q1 0 p1 1\n"))], "run_dup.trec: line 3"),
    "run_bad_score": ("evaluate", lambda F: [str(_put(
        F, "run_score.trec", "q1 Q0 p1 1 high t\n")), "--qrels", str(_put(
            F, "qrels_c.txt", "q1 0 p1 1\n"))], "run_score.trec: line 1"),
    "run_without_qrels": ("evaluate", lambda F: [str(_put(
        F, "run_noqrels.trec", "q1 Q0 p1 1 2.0 t\n"))], "run_noqrels.trec: .*--qrels"),
    "evaluate_unknown_measure": ("evaluate", lambda F: [str(F.results), "--metrics",
                                                        "nDCG@10,Bogus@3"], "--metrics"),
    "retrieve_run_tag_space": ("retrieve", lambda F: bm25(F, F.questions, "--format", "trec",
                                                          "--run_tag", "my run"), "--run_tag"),
    "mine_not_results": ("mine", lambda F: ["--results", str(F.train_records), "--passages",
                                            str(F.psgs), "--out", str(F.dir / "m.jsonl")],
                         "train.jsonl"),
    "mine_unknown_passage": ("mine", lambda F: ["--results", str(F.results_unknown_id),
                                                "--passages", str(F.psgs), "--out",
                                                str(F.dir / "m.jsonl")], "results_unknown.json"),
    "answer_results_missing": ("answer", lambda F: ["--reader", str(F.no_spec), "--results",
                                                    str(F.missing), "--passages", str(F.psgs)],
                               "missing.json"),
    "answer_report_k_past_top_k": ("answer", lambda F: [
        "--reader", str(F.no_spec), "--results", str(F.results), "--passages", str(F.psgs),
        "--top_k", "2", "--report_k", "1,5"], "--report_k"),
    "answer_results_disagree": ("answer", lambda F: [
        "--reader", str(F.no_spec), "--passages", str(F.psgs),
        "--results", f"{F.results},{F.results_other_q}"], "results_other.json"),
    "answer_no_passages": ("answer", lambda F: ["--reader", str(F.no_spec), "--results",
                                                str(F.results)], "--passages"),
    "answer_nothing_to_answer": ("answer", lambda F: ["--reader", str(F.no_spec),
                                                      "--passages", str(F.psgs)], "--questions"),
    "export_checkpoint_missing": ("export", lambda F: ["--checkpoint", str(F.dir / "nowd"),
                                                       "--out", str(F.dir / "x")], "nowd"),
    "export_not_a_workdir": ("export", lambda F: ["--checkpoint", str(F.no_spec), "--out",
                                                  str(F.dir / "x")], "model.json"),
    "export_model_json_corrupt": ("export", lambda F: ["--checkpoint", str(F.bad_workdir),
                                                       "--out", str(F.dir / "x")], "model.json"),
    "export_pyserini_without_embeddings": ("export", lambda F: [
        "--format", "pyserini", "--out", str(F.dir / "pyserini")], "--embeddings"),
    "prepare_data_dir_missing": ("prepare", lambda F: ["squad", "--out", str(F.dir / "prep"),
                                                       "--data_dir", str(F.dir / "nosquad")],
                                 "nosquad"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_error_line_and_exit_2(case, F, capsys):
  tool, argv, names = CASES[case]
  before = {p: p.stat().st_mtime_ns for p in F.dir.rglob("*") if p.is_file()}
  status = getattr(cli, tool)(argv(F))
  err = capsys.readouterr().err
  lines = [l for l in err.splitlines() if l.startswith("error:")]
  assert status == 2, err[-2000:]
  assert len(lines) == 1 and re.search(names, lines[0]), err[-2000:]
  assert "Traceback" not in err
  changed = [p for p, t in before.items() if not p.exists() or p.stat().st_mtime_ns != t]
  assert not changed, changed  # no earlier file rewritten or removed


def test_debug_shows_the_traceback(F, capsys):
  assert cli.evaluate([str(F.missing), "--debug"]) == 2
  err = capsys.readouterr().err
  assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error:")


def test_disk_full_names_the_file(F, capsys, monkeypatch):
  def full(*a, **k):
    raise OSError(28, "No space left on device")
  monkeypatch.setattr(np, "save", full)
  out = F.dir / "enc_full"
  assert cli.encode(encode(F, F.psgs, out="enc_full")) == 2
  lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and "part-000-00000.npy" in lines[0] and "No space" in lines[0]
  assert not list(out.glob("*.npy*"))  # no half-written part left


def test_questions_without_answers_retrieve_and_say_no_accuracy(F, capsys):
  out = F.dir / "noans_results.json"
  assert cli.retrieve(bm25(F, F.no_answers)[:-2] + ["--out", str(out)]) == 0
  assert "no accuracy can be computed" in capsys.readouterr().out
  results = json.loads(out.read_text())
  assert results[0]["question"] == "capital of france" and len(results[0]["ctxs"]) == 2


def test_interactive_answer_survives_a_bad_question(F, capsys):
  from dpr_jax.reader.answer import interactive
  from dpr_jax.retrieval.retrieve import Settings

  def qa(results):
    if "bad" in results[0]["question"]:
      raise ValueError("reader: expected a good question, found a bad one")
    c = results[0]["ctxs"][0]
    return [{"prediction": "paris", "title": c["title"], "passage_id": c["id"],
             "passage_rank": 0, "passage": c["text"], "span_score": 7.25,
             "passage_score": 1.5, "retriever_score": c["score"]}]
  interactive(Settings(passages=str(F.psgs), retriever="bm25", k=2), qa,
              lines=["a bad question\n", "capital of france\n"])
  got = capsys.readouterr()
  assert "error: reader: expected a good question" in got.err
  assert "answer: paris" in got.out and "passage p2" in got.out
  assert "span 7.25, passage 1.50, retriever " in got.out


@pytest.mark.parametrize("tool", ["train", "encode", "retrieve", "evaluate", "mine", "answer",
                                  "reader_train", "prepare", "export", "scaling", "download",
                                  "plot", "serve", "recipe"])
def test_every_tool_has_help_and_debug(tool, capsys):
  with pytest.raises(SystemExit) as e:
    getattr(cli, tool)(["--help"])
  assert e.value.code == 0
  out = capsys.readouterr().out
  assert out.startswith("usage: ") and "--debug" in out


def test_entry_points_name_the_cli_functions():
  import importlib
  import tomllib
  pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
  scripts = tomllib.loads(pyproject.read_text())["project"]["scripts"]
  assert {"dpr-train", "dpr-encode", "dpr-retrieve", "dpr-evaluate", "dpr-mine", "dpr-answer",
          "dpr-reader-train", "dpr-prepare", "dpr-export", "dpr-scaling", "dpr-download",
          "dpr-plot", "dpr-serve", "dpr-recipe", "dpr-compile"} == set(scripts)
  for target in scripts.values():
    module, _, name = target.partition(":")
    assert callable(getattr(importlib.import_module(module), name)), target
