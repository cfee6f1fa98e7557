"""Reader training and prediction: the same sharded step, Orbax checkpoints, metrics.jsonl and
config conventions as the retriever.

  python -m dpr_jax.reader_train --config configs/reader_squad.py --workdir runs/reader

Training data: a retrieval results file on training questions (`data.train_results`); validation:
EM / F1 of the predicted answer over the top `eval.top_k` passages of `data.dev_results`. The
best checkpoint (by EM) is kept in `best/`.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from dpr_jax.data import answers
from dpr_jax.training import checkpoint, sharding, steps
from dpr_jax.reader import data as reader_data
from dpr_jax.models.bert import BertConfig, example_keys
from dpr_jax.models.reader import Reader, best_span, reader_loss

log = logging.getLogger("dpr_jax")


def build_reader(init: str, *, dtype=jnp.float32, remat: bool = False, seed: int = 0,
                 bert: dict | None = None) -> Reader:
  """A reader whose BERT starts from `init` (HF BERT dir, `minilm`, or `random`)."""
  from dpr_jax.data import resources
  from dpr_jax.models.hf import load_hf_encoder
  if init == "random":
    return Reader(BertConfig(**(bert or {})), dtype=dtype, remat=remat, rngs=nnx.Rngs(seed))
  enc = load_hf_encoder(resources.minilm_path() if init == "minilm" else init, dtype=dtype,
                        remat=remat, seed=seed)
  r = Reader(enc.bert.cfg, dtype=dtype, remat=remat, rngs=nnx.Rngs(seed))
  r.bert = enc.bert
  return r


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


def predict(forward, params, results, tok, *, top_k: int, batch_questions: int,
            max_answer_length: int, mesh) -> list[dict]:
  """Reads the top `top_k` passages of each result -> [{question, answers, prediction, title,
  passage_id, passage_rank, score}]: the best span of the passage the selection head ranks
  first."""
  preds = []
  n_dev = sharding.batch_size_multiple(mesh)
  bq = -(-batch_questions // n_dev) * n_dev
  for s in tqdm(range(0, len(results), bq), desc="read", unit="batch", mininterval=2,
                disable=len(results) <= bq):
    chunk = results[s: s + bq]
    encs = [[tok.encode(r["question"], c.get("title", ""), c["text"]) for c in r["ctxs"][:top_k]]
            for r in chunk]
    for i, e in enumerate(encs):
      if not e:
        raise reader_data.ReaderDataError(
            f"result {s + i} ({chunk[i]['question'][:60]!r}): no retrieved passages to read")
    k = max(len(e) for e in encs)
    for e in encs:  # fewer than k passages: repeat the last (never selected twice in practice)
      e += [e[-1]] * (k - len(e))
    encs += [encs[0]] * (bq - len(encs))
    b = reader_data.pad_inputs(encs, tok.max_length)
    g = sharding.host_to_global({"ids": b["input_ids"], "mask": b["attention_mask"]}, mesh)
    start, end, select = (np.asarray(x) for x in forward(params, g["ids"], g["mask"]))
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


def train(config, workdir) -> dict:
  from dpr_jax.data.corpus import read_corpus
  from dpr_jax.training.loop import Metrics, NonFiniteLoss
  workdir = Path(workdir).absolute()
  workdir.mkdir(parents=True, exist_ok=True)
  mc, dc, tc, oc, ec = config.model, config.data, config.train, config.optim, config.eval
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=1))
  mesh = sharding.make_mesh()
  corpus = read_corpus(dc.passages) if dc.passages else None
  from dpr_jax.data import resources
  tok_path = mc.tokenizer or (str(resources.minilm_path()) if mc.init in ("minilm", "random")
                              else mc.init)
  tok = reader_data.ReaderTokenizer(tok_path, dc.max_length, dc.question_max_length)
  items, stats = reader_data.train_items(
      reader_data.load_results(dc.train_results, corpus, dc.max_train_questions or None), tok,
      top=dc.top)
  log.info("reader training data: %d questions, %d skipped without a positive passage",
           len(items), stats["skipped_no_positive"])
  if not items:
    raise ValueError(f"{dc.train_results}: no question has a retrieved passage with an answer")
  dev = (reader_data.load_results(dc.dev_results, corpus, ec.max_questions or None)
         if dc.dev_results else None)

  model = build_reader(mc.init, dtype=jnp.bfloat16 if mc.dtype == "bfloat16" else jnp.float32,
                       remat=mc.remat, seed=tc.seed, bert=dict(mc.bert))
  checkpoint.write_model_spec(workdir, {"kind": "reader", "bert": model.bert.cfg.to_hf(),
                                        "tokenizer": str(tok_path), "max_length": dc.max_length,
                                        "question_max_length": dc.question_max_length})
  graphdef, state_ = nnx.split(model)
  shard = nnx.to_pure_dict(sharding.param_shardings(state_, mesh))
  params = jax.device_put(nnx.to_pure_dict(state_), shard)
  schedule = steps.make_schedule(oc.lr, oc.warmup_steps, tc.max_steps)
  tx = steps.make_optimizer(schedule, weight_decay=oc.weight_decay, clip_norm=oc.clip_norm)
  state, state_shard = steps.place_state(params, tx, tc.seed, mesh, shard)
  train_step = make_step(graphdef, tx, schedule, mesh, state_shard)
  forward = make_forward(graphdef)

  ckpt = checkpoint.Checkpointer(workdir, keep=tc.keep_checkpoints, best_metric="eval/em",
                                 best_mode="max")
  start = ckpt.latest_step() or 0
  if start:
    state, _ = ckpt.restore(start, state)
  metrics = Metrics(workdir, start)

  def evaluate():
    preds = predict(forward, state["params"], dev, tok, top_k=ec.top_k,
                    batch_questions=ec.batch_questions,
                    max_answer_length=ec.max_answer_length, mesh=mesh)
    s = score(preds)
    return {"eval/em": s["em"], "eval/f1": s["f1"], "eval/questions": s["count"]}

  last, t_step = {}, start
  if start == 0 and dev and ec.at_start:
    metrics.write(0, evaluate())
  t0 = time.time()
  for step in tqdm(range(start, tc.max_steps), initial=start, total=tc.max_steps, desc="reader",
                   unit="step", mininterval=2):
    # Batches are a function of (seed, step): a resumed run sees the batches it would have.
    rng = np.random.default_rng([tc.seed, step])
    sel = rng.choice(len(items), tc.batch_questions, replace=len(items) < tc.batch_questions)
    b = reader_data.train_batch([items[i] for i in sel], rng, dc.passages_per_question,
                                dc.max_length, bucket_multiple=dc.bucket_multiple)
    state, m = train_step(state, sharding.host_to_global(b, mesh))
    done = step + 1
    if done % tc.log_every == 0 or done == tc.max_steps or done % ec.every == 0:
      m = {k: float(v) for k, v in jax.device_get(m).items()}
      if not np.isfinite(m["train/loss"]):
        ckpt.wait()
        raise NonFiniteLoss(f"non-finite reader loss at step {done}; stopped")
      m["train/questions_per_s"] = (done - t_step) * tc.batch_questions / max(time.time() - t0, 1e-9)
      t0, t_step = time.time(), done
      metrics.write(done, m)
      last.update(m)
    ev = evaluate() if dev and (done % ec.every == 0 or done == tc.max_steps) else None
    if ev:
      metrics.write(done, ev)
      last.update(ev)
      t0, t_step = time.time(), done
    if ev or done % tc.save_every == 0 or done == tc.max_steps:
      ckpt.save(done, state, {"step": done, "seed": tc.seed}, ev)
  ckpt.wait()
  ckpt.close()
  return last


def load_reader(workdir, which: str = "best"):
  """-> (Reader, ReaderTokenizer, step) from a reader training workdir."""
  model, spec, step = checkpoint.load_trained(workdir, which)
  tok = reader_data.ReaderTokenizer(spec["tokenizer"], spec["max_length"],
                                    spec["question_max_length"])
  return model, tok, step


def main(argv):
  del argv
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.WARNING)
  logging.getLogger("dpr_jax").setLevel(logging.INFO)
  print(json.dumps(train(_CONFIG.value, _WORKDIR.value)))


if __name__ == "__main__":
  from dpr_jax import cpu_malloc
  cpu_malloc.ensure()  # DPR_JAX_MALLOC=1: re-executes this command (see cpu_malloc)
  from absl import app, flags
  from ml_collections import config_flags
  from dpr_jax import config_lib
  _CONFIG = config_flags.DEFINE_config_file("config", None, "reader config (configs/reader_*.py)")
  _WORKDIR = flags.DEFINE_string("workdir", None, "checkpoints, metrics.jsonl", required=True)
  flags.mark_flags_as_required(["config"])
  app.run(main, argv=config_lib.resolve_config_arg(sys.argv))
