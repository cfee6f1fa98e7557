"""Reader training and prediction on the shared training harness (`dpr_jax.training.harness`):
the same sharded step, Orbax checkpoints, resume, non-finite guard, metrics.jsonl and config
conventions as the retriever.

  python -m dpr_jax.reader_train --config configs/reader_squad.py --workdir runs/reader

Training data: a retrieval results file on training questions (`data.train_results`); validation:
EM / F1 of the predicted answer over the top `eval.top_k` passages of `data.dev_results`. The
best checkpoint (by EM) is kept in `best/`.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from tqdm import tqdm

from dpr_jax.data import answers
from dpr_jax.training import harness, sharding, steps
from dpr_jax.training.loading import build_reader, load_trained, tokenizer_path
from dpr_jax.reader import data as reader_data
from dpr_jax.models.bert import example_keys
from dpr_jax.models.reader import best_span, reader_loss

log = logging.getLogger("dpr_jax")
# What defines a reader run: a re-run on a workdir that recorded other values is refused.
IDENTITY = ("model", "data")


def make_step(graphdef, tx, schedule, mesh, state_shardings=None):
  """-> step(state, batch) -> (state, metrics); batch arrays [N, ...] sharded over N."""
  def loss_fn(params, batch, key):
    n, m, _ = batch["input_ids"].shape
    keys = example_keys(key, jnp.arange(n * m))
    start, end, select = nnx.merge(graphdef, params)(batch["input_ids"], batch["attention_mask"],
                                                    dropout_rng=keys)
    out = reader_loss(start, end, select, batch["text_mask"], batch["span_start"],
                      batch["span_end"], batch["span_mask"])
    return out["loss"], out

  return steps.make_update_step(jax.value_and_grad(loss_fn, has_aux=True), tx, schedule, mesh,
                                lambda loss, out, grads: {"train/" + k: v for k, v in out.items()},
                                state_shardings)


def _to_host(x: jax.Array) -> np.ndarray:
  """A global array's values on every process."""
  if x.is_fully_addressable:
    return np.asarray(x)
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _encode_chunk(chunk: list[dict], tok, top_k: int, bq: int, first: int):
  """Up to `bq` results -> [bq][k] encodings of their top `top_k` passages (short rows repeat
  their last passage; missing rows repeat the first result)."""
  encs = [[tok.encode(r["question"], c.get("title", ""), c["text"]) for c in r["ctxs"][:top_k]]
          for r in chunk]
  for i, e in enumerate(encs):
    if not e:
      raise reader_data.ReaderDataError(
          f"result {first + i} ({chunk[i]['question'][:60]!r}): no retrieved passages to read")
  k = max(len(e) for e in encs)
  for e in encs:  # fewer than k passages: repeat the last (never selected twice in practice)
    e += [e[-1]] * (k - len(e))
  return encs + [encs[0]] * (bq - len(encs))


def predict(forward, params, results, tok, *, top_k: int, batch_questions: int,
            max_answer_length: int, mesh) -> list[dict]:
  """Reads the top `top_k` passages of each result -> [{question, answers, prediction, title,
  passage_id, passage_rank, score}]: the best span of the passage the selection head ranks
  first. Every process reads its share of each batch and receives every prediction."""
  preds = []
  n_dev = sharding.batch_size_multiple(mesh)
  bq = -(-batch_questions // n_dev) * n_dev
  for s in tqdm(range(0, len(results), bq), desc="read", unit="batch", mininterval=2,
                disable=len(results) <= bq or jax.process_index() != 0):
    chunk = results[s: s + bq]
    encs = _encode_chunk(chunk, tok, top_k, bq, s)
    b = reader_data.pad_inputs(encs, tok.max_length)
    g = sharding.host_to_global(
        harness.local_rows({"ids": b["input_ids"], "mask": b["attention_mask"]}), mesh)
    start, end, select = (_to_host(x) for x in forward(params, g["ids"], g["mask"]))
    for i, r in enumerate(chunk):
      j = int(np.argmax(select[i, : min(top_k, len(r["ctxs"]))]))
      s_, e_, sc = best_span(start[i, j], end[i, j], b["text_mask"][i, j], max_answer_length)
      enc = encs[i][j]
      pred = reader_data.span_text(enc, s_, e_) if enc.text_end > enc.text_start else ""
      preds.append({"question": r["question"], "answers": r["answers"], "prediction": pred,
                    "passage_id": r["ctxs"][j].get("id"), "passage_rank": j,
                    "title": enc.title, "passage": enc.text, "score": sc})
  return preds


def score(preds: list[dict]) -> dict:
  em = [answers.exact_match(p["prediction"], p["answers"]) for p in preds]
  f = [answers.f1(p["prediction"], p["answers"]) for p in preds]
  return {"em": float(np.mean(em)) if em else 0.0, "f1": float(np.mean(f)) if f else 0.0,
          "count": len(preds)}


def make_forward(graphdef):
  return jax.jit(lambda params, ids, mask: nnx.merge(graphdef, params)(ids, mask))


def _load_data(config, tok):
  """-> (training items, dev results or None)."""
  from dpr_jax.data.corpus import read_corpus
  dc, ec = config.data, config.eval
  corpus = read_corpus(dc.passages) if dc.passages else None
  items, stats = reader_data.train_items(
      reader_data.load_results(dc.train_results, corpus, dc.max_train_questions or None), tok,
      top=dc.top)
  log.info("reader training data: %d questions, %d skipped without a positive passage",
           len(items), stats["skipped_no_positive"])
  if not items:
    raise reader_data.ReaderDataError(
        f"{dc.train_results}: no question has a retrieved passage with an answer")
  dev = (reader_data.load_results(dc.dev_results, corpus, ec.max_questions or None)
         if dc.dev_results else None)
  return items, dev


def global_batch(items, step: int, config) -> dict[str, np.ndarray]:
  """Step `step`'s whole batch, a function of (seed, step) alone: every process builds the same
  one (and takes its rows), and a resumed run sees the batches it would have."""
  dc, tc = config.data, config.train
  rng = np.random.default_rng([tc.seed, step])
  sel = rng.choice(len(items), tc.batch_questions, replace=len(items) < tc.batch_questions)
  return reader_data.train_batch([items[i] for i in sel], rng, dc.passages_per_question,
                                 dc.max_length, bucket_multiple=dc.bucket_multiple)


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
  items, dev = _load_data(config, tok)
  workdir.mkdir(parents=True, exist_ok=True)
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
      s, batch=lambda step: harness.local_rows(global_batch(items, step, config)),
      evaluate=evaluate if dev else None, meta=lambda step: {"step": step, "seed": tc.seed},
      schedule=schedule, mesh=mesh, workdir=workdir,
      throughput=("train/questions_per_s", tc.batch_questions), desc="reader")


def load_reader(workdir, which: str = "best"):
  """-> (Reader, ReaderTokenizer, step) from a reader training workdir."""
  model, spec, step = load_trained(workdir, which)
  tok = reader_data.ReaderTokenizer(spec["tokenizer"], spec["max_length"],
                                    spec["question_max_length"])
  return model, tok, step


def main(argv=None):
  from dpr_jax import cli
  ap = cli.Parser("python -m dpr_jax.reader_train", __doc__)
  ap.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl")
  a, config = cli.parse_with_config(ap, argv)
  print(json.dumps(train(config, a.workdir)))


if __name__ == "__main__":
  from dpr_jax import cli
  sys.exit(cli.reader_train())
