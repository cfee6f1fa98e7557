"""Reader training and prediction on the shared training harness (`dpr_jax.training.harness`):
the same sharded step, Orbax checkpoints, resume, non-finite guard, metrics.jsonl and config
conventions as the retriever.

  python -m dpr_jax.reader_train --config configs/reader_squad.py --workdir runs/reader

Training data: a retrieval results file on training questions (`data.train_results`); validation:
EM / F1 of the predicted answer over the top `eval.top_k` passages of `data.dev_results`. The
best checkpoint (by EM) is kept in `best/`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dpr_jax.training import harness, sharding, steps
from dpr_jax.training.loading import build_reader, load_trained, tokenizer_path
from dpr_jax.reader import data as reader_data
from dpr_jax.models.bert import example_keys
from dpr_jax.models.reader import NEG, reader_loss
from dpr_jax.reader.predict import make_forward, predict, score  # noqa: F401 (re-exported)

log = logging.getLogger("dpr_jax")
# What defines a reader run: a re-run on a workdir that recorded other values is refused.
IDENTITY = ("model", "data", "optim", "train")


def batch_loss(graphdef, params, batch, key):
  """-> (loss, `reader_loss` outputs) of a `reader_data.train_batch` batch; `key` None: no
  dropout. Slots with `passage_mask` 0 (empty) are left out of the selection softmax."""
  n, m, _ = batch["input_ids"].shape
  keys = None if key is None else example_keys(key, jnp.arange(n * m))
  start, end, select = nnx.merge(graphdef, params)(batch["input_ids"], batch["attention_mask"],
                                                  dropout_rng=keys)
  if "passage_mask" in batch:
    select = jnp.where(batch["passage_mask"] > 0, select, NEG)
  out = reader_loss(start, end, select, batch["text_mask"], batch["span_start"],
                    batch["span_end"], batch["span_mask"])
  return out["loss"], out


def make_step(graphdef, tx, schedule, mesh, state_shardings=None):
  """-> step(state, batch) -> (state, metrics); batch arrays [N, ...] sharded over N."""
  loss_fn = lambda params, batch, key: batch_loss(graphdef, params, batch, key)
  return steps.make_update_step(jax.value_and_grad(loss_fn, has_aux=True), tx, schedule, mesh,
                                lambda loss, out, grads: {"train/" + k: v for k, v in out.items()},
                                state_shardings)


def gold_rows(dataset) -> list[dict]:
  """DPR examples -> results rows whose only passage is the first positive (the gold
  paragraph): validation of the reader alone."""
  return [{"question": ex.question, "answers": list(ex.answers),
           "ctxs": [{"id": ex.positives[0].pid, "title": ex.positives[0].title,
                     "text": ex.positives[0].text, "has_answer": True}]}
          for ex in dataset.examples]


def _load_data(config, workdir: Path):
  """-> (training examples, dev results rows or None). Training examples come from DPR training
  files (`data.train_files`, or the folder `data.prepare` builds: gold positives and BM25 hard
  negatives) and/or a results file on training questions (`data.train_results`); validation
  from a results file (`data.dev_results`: end to end over its top `eval.top_k`) or else a DPR
  file's gold paragraphs (`data.dev_file`)."""
  from dpr_jax.data import examples
  from dpr_jax.data.corpus import read_corpus
  from dpr_jax.training.data_files import prepared_files
  dc, ec = config.data, config.eval
  if dc.train_results or dc.train_files:  # named data: nothing to prepare
    train_files, dev_file = [f for f in dc.train_files.split(",") if f], dc.dev_file
  else:
    train_files, dev_file = prepared_files(dc, workdir)
  corpus = read_corpus(dc.passages) if dc.passages and (dc.train_results or dc.dev_results) \
      else None
  limit = dc.max_train_questions or None
  exs, skipped = [], 0
  for f in train_files:
    ds = examples.load_dataset(f, dc.keep_negatives, limit)
    exs += ds.examples
    skipped += ds.skipped_no_positive
  if dc.train_results:
    rows = reader_data.load_results(dc.train_results, corpus, limit)
    more = reader_data.examples_from_results(rows, dc.top)
    skipped += sum(not ex.positives for ex in more)
    exs += [ex for ex in more if ex.positives]
  log.info("reader training data: %d questions, %d skipped without a positive passage",
           len(exs), skipped)
  if not exs:
    raise reader_data.ReaderDataError(
        f"{dc.train_results or ','.join(train_files)}: no question has a positive passage")
  if dc.dev_results:
    dev = reader_data.load_results(dc.dev_results, corpus, ec.max_questions or None)
  elif dev_file:
    dev = gold_rows(examples.load_dataset(dev_file, 0, ec.max_questions or None))
  else:
    dev = None
  return exs, dev


def global_batch(exs, tok, step: int, config) -> tuple[dict[str, np.ndarray], dict]:
  """Step `step`'s whole batch and its data stats, a function of (seed, step) alone: every
  process builds the same one (and takes its rows), and a resumed run sees the batches it would
  have. Questions are read in a per-epoch random order; one with no answer in its positives is
  replaced by random others (counted)."""
  dc, tc = config.data, config.train
  n, bq = len(exs), tc.batch_questions
  first = step * bq
  order = {}
  cands = []
  for i in range(first, first + bq):
    epoch = i // n
    if epoch not in order:
      order[epoch] = np.random.default_rng([tc.seed, epoch]).permutation(n)
    cands.append(int(order[epoch][i % n]))
  rng = np.random.default_rng([tc.seed, step])
  cands += [int(i) for i in rng.integers(0, n, 4 * bq)]
  b, stats = reader_data.train_batch(exs, cands, rng, tok, questions=bq,
                                     passages=dc.passages_per_question,
                                     bucket_multiple=dc.bucket_multiple)
  return b, {"data/" + k: v for k, v in stats.items()}


def train(config, workdir) -> dict:
  """Trains (or resumes) a reader as `config` says. Returns the last metrics."""
  workdir = Path(workdir).absolute()
  harness.check_workdir(config, workdir, IDENTITY)
  mc, dc, tc, ec = config.model, config.data, config.train, config.eval
  mesh = sharding.make_mesh(fsdp=tc.fsdp)
  if tc.batch_questions % sharding.batch_size_multiple(mesh):
    raise ValueError(f"train.batch_questions={tc.batch_questions} must be a multiple of the "
                     f"device count {sharding.batch_size_multiple(mesh)}")
  tok_path = tokenizer_path(mc.init, mc.tokenizer)
  tok = reader_data.ReaderTokenizer(tok_path, dc.max_length, dc.question_max_length)
  workdir.mkdir(parents=True, exist_ok=True)
  exs, dev = _load_data(config, workdir)
  model = build_reader(mc.init, dtype=mc.dtype, remat=mc.remat, attention=mc.attention,
                       seed=tc.seed, bert=dict(mc.bert))
  spec = {"kind": "reader", "bert": model.bert.cfg.to_hf(), "tokenizer": str(tok_path),
          "max_length": dc.max_length, "question_max_length": dc.question_max_length}
  s = harness.setup(model, lambda g, tx, sched, shard: make_step(g, tx, sched, mesh, shard),
                    mesh=mesh, workdir=workdir, train_cfg=tc, optim_cfg=config.optim,
                    total_steps=tc.max_steps, best_metric="eval/em", best_mode="max")
  del model
  harness.write_records(workdir, config, spec)
  forward = make_forward(s.graphdef)

  def evaluate(params):
    preds = predict(forward, params, dev, tok, top_k=ec.top_k,
                    batch_questions=ec.batch_questions,
                    max_answer_length=ec.max_answer_length, mesh=mesh)
    sc = score(preds)
    return {"eval/em": sc["em"], "eval/f1": sc["f1"], "eval/questions": sc["count"]}

  schedule = harness.Schedule(tc.max_steps, log_every=tc.log_every, eval_every=ec.every,
                              save_every=tc.save_every, eval_at_start=ec.at_start)
  return harness.run(
      s, batch=lambda step: _local(global_batch(exs, tok, step, config)),
      evaluate=evaluate if dev else None, meta=lambda step: {"step": step, "seed": tc.seed},
      schedule=schedule, mesh=mesh, workdir=workdir,
      throughput=("train/questions_per_s", tc.batch_questions), desc="reader")


def _local(batch_and_stats):
  b, stats = batch_and_stats
  return harness.local_rows(b), stats


def load_reader(workdir, which: str = "best"):
  """-> (Reader, ReaderTokenizer, step) from a reader training workdir."""
  model, spec, step = load_trained(workdir, which)
  tok = reader_data.ReaderTokenizer(spec["tokenizer"], spec["max_length"],
                                    spec["question_max_length"])
  return model, tok, step
