"""The training loop: config in, checkpoints and metrics.jsonl out. Resumes from the workdir."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from dpr_jax.training import checkpoint, sharding, steps
from dpr_jax.data import examples as data, resources
from dpr_jax.models.hf import build_dual_encoder
from dpr_jax.training.inference import embed_bucketed
from dpr_jax.training.loss import positive_ranks, scores
from dpr_jax.models.tokenization import Tokenizer

log = logging.getLogger("dpr_jax")


class NonFiniteLoss(FloatingPointError):
  pass


def _prepare_if_needed(dc, workdir: Path) -> tuple[list[str], str]:
  """Training files and dev file named by the config; runs `prepare squad` for the demo."""
  train_files = [f for f in dc.train_files.split(",") if f]
  dev_file = dc.dev_file
  if dc.prepare:
    out = Path(dc.prepare_dir or workdir / "data")
    if not (out / "train.jsonl.gz").is_file():
      from dpr_jax.tools.prepare import prepare_squad
      if jax.process_index() == 0:
        prepare_squad(out, **dict(dc.prepare_args))
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices("prepare")
    train_files = train_files or [str(out / "train.jsonl.gz")]
    dev_file = dev_file or str(out / "dev.jsonl.gz")
  if not train_files:
    raise ValueError("no training data: set --config.data.train_files=FILE[,FILE...] "
                     "(or the environment variable the config documents)")
  return train_files, dev_file


class Metrics:
  """metrics.jsonl (process 0). On resume, lines beyond the restored step are dropped."""

  def __init__(self, workdir: Path, resume_step: int):
    self.path = workdir / "metrics.jsonl"
    self.on = jax.process_index() == 0
    if self.on and self.path.exists():
      keep = [l for l in self.path.read_text().splitlines()
              if l.strip() and json.loads(l)["step"] <= resume_step]
      self.path.write_text("".join(l + "\n" for l in keep))

  def write(self, step: int, values: dict):
    if self.on:
      with open(self.path, "a") as f:
        f.write(json.dumps({"step": step, **{k: float(v) for k, v in values.items()}}) + "\n")


def evaluate(params, fns, dev_batches, val_set, tok, dc, ec, mesh, similarity, temperature):
  """DPR's validation: in-batch NLL over dev batches, and the average rank of each dev
  question's positive among all dev passages."""
  out = {}
  if dev_batches is not None:
    sums = np.zeros(3)
    for i in range(min(dev_batches.steps_per_epoch, ec.max_batches)):
      b = sharding.host_to_global(data.global_batch_arrays(
          dev_batches, tok, i, dc.question_max_length, dc.passage_max_length, dc.bucket_multiple,
          jax.process_index(), jax.process_count())[0], mesh)
      m = jax.device_get(fns["eval_loss"](params, b))
      sums += [m["loss"] * m["count"], m["accuracy"] * m["count"], m["count"]]
    out["eval/loss"], out["eval/accuracy"] = sums[0] / sums[2], sums[1] / sums[2]
  if val_set is not None:
    questions, passages, positive = val_set
    q = tok.questions(questions, max_length=dc.question_max_length, pad_to_max=False)
    p = tok.passages([x.title for x in passages], [x.text for x in passages],
                     max_length=dc.passage_max_length, pad_to_max=False)
    qe, pe = (embed_bucketed(fns[f], params, t["input_ids"], t["attention_mask"], ec.batch_size,
                             mesh, dc.bucket_multiple, n) for f, t, n in (
        ("encode_q", q, dc.question_max_length), ("encode_p", p, dc.passage_max_length)))
    ranks = np.asarray(positive_ranks(scores(jnp.asarray(qe), jnp.asarray(pe), similarity,
                                             temperature), jnp.asarray(positive)))
    out["eval/avg_rank"] = float(ranks.mean())
    for k in (1, 5, 20):
      out[f"eval/top{k}"] = float((ranks < k).mean())
    out["eval/num_passages"] = len(passages)
  return out


def train(config, workdir) -> dict:
  """Trains (or resumes) a dual encoder as `config` says. Returns the last metrics."""
  workdir = Path(workdir).absolute()
  workdir.mkdir(parents=True, exist_ok=True)
  mc, dc, tc, oc, lc, ec = (config.model, config.data, config.train, config.optim,
                            config.loss, config.eval)
  if jax.process_index() == 0:
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=1))
  mesh = sharding.make_mesh(fsdp=tc.fsdp)
  if tc.global_batch % sharding.batch_size_multiple(mesh):
    raise ValueError(f"global batch {tc.global_batch} must be a multiple of the device count "
                     f"{sharding.batch_size_multiple(mesh)}")

  train_files, dev_file = _prepare_if_needed(dc, workdir)
  weights = [float(w) for w in dc.train_weights.split(",")] if dc.train_weights else [1.0] * len(train_files)
  datasets = [data.load_dataset(f, dc.keep_negatives, dc.max_train_examples or None)
              for f in train_files]
  for d in datasets:
    log.info("%s: %d examples, %d skipped without a positive", d.path, len(d.examples),
             d.skipped_no_positive)
  batches = data.TrainBatches(datasets, weights, tc.global_batch, dc.num_hard_negatives,
                              tc.seed, dc.shuffle_positives)
  dev_batches = val_set = None
  if dev_file:
    dev = data.load_dataset(dev_file, dc.keep_negatives, ec.max_questions or None)
    if len(dev.examples) >= tc.global_batch:
      dev_batches = data.TrainBatches([dev], [1.0], tc.global_batch, dc.num_hard_negatives,
                                      tc.seed)
    val_set = data.validation_set(dev.examples)
  total = tc.max_steps or tc.epochs * batches.steps_per_epoch

  dtype = jnp.bfloat16 if mc.dtype == "bfloat16" else jnp.float32
  # Cosine-trained models emit unit vectors, so that every index's inner product is the
  # similarity they were trained with.
  model = build_dual_encoder(mc.init, pooling=mc.pooling, projection_dim=mc.projection_dim,
                             normalize=lc.similarity == "cosine", tied=mc.tied, dtype=dtype, remat=mc.remat, seed=tc.seed,
                             bert=dict(mc.bert))
  tok_path = mc.tokenizer or (str(resources.minilm_path()) if mc.init in ("minilm", "random")
                              else mc.init)
  tok = Tokenizer(tok_path, dc.question_max_length, dc.passage_max_length)
  if jax.process_index() == 0:
    checkpoint.write_model_spec(workdir, checkpoint.model_spec(model, pooling=mc.pooling,
                                                               tokenizer=tok.path))
  graphdef, state_ = nnx.split(model)
  shard = sharding.param_shardings(state_, mesh)
  params = jax.device_put(nnx.to_pure_dict(state_), nnx.to_pure_dict(shard))
  del model, state_

  schedule = steps.make_schedule(oc.lr, oc.warmup_steps, total)
  tx = steps.make_optimizer(schedule, weight_decay=oc.weight_decay, clip_norm=oc.clip_norm,
                            b1=oc.b1, b2=oc.b2, eps=oc.eps)
  state, state_shard = steps.place_state(params, tx, tc.seed, mesh, nnx.to_pure_dict(shard))
  kw = dict(similarity=lc.similarity, temperature=lc.temperature)
  train_step = steps.make_train_step(graphdef, tx, schedule, mesh,
                                     grad_cache_chunk=tc.grad_cache_chunk,
                                     state_shardings=state_shard, **kw)
  fns = {"eval_loss": steps.make_eval_loss(graphdef, mesh, **kw),
         "encode_q": steps.make_encode(graphdef, "question"),
         "encode_p": steps.make_encode(graphdef, "passage")}

  ckpt = checkpoint.Checkpointer(workdir, keep=tc.keep_checkpoints)
  start = ckpt.latest_step() or 0
  if start:
    state, meta = ckpt.restore(start, state)
    log.info("resumed from step %d (epoch %d, batch %d)", start, *batches.position(start))
  metrics = Metrics(workdir, start)
  do_eval = lambda: evaluate(state["params"], fns, dev_batches, val_set, tok, dc, ec, mesh, **kw)
  if start == 0 and ec.at_start and (dev_batches or val_set):
    metrics.write(0, do_eval())

  def meta(step):
    epoch, i = batches.position(step)
    return {"step": step, "epoch": epoch, "batch_in_epoch": i, "seed": tc.seed,
            "steps_per_epoch": batches.steps_per_epoch}

  pending, last, t0, last_good = [], {}, time.time(), start
  bar = tqdm(total=total, initial=start, desc="train", unit="step",
             disable=jax.process_index() != 0, mininterval=1)
  for step in range(start, total):
    b, pad = data.global_batch_arrays(batches, tok, step, dc.question_max_length,
                                      dc.passage_max_length, dc.bucket_multiple,
                                      jax.process_index(), jax.process_count())
    state, m = train_step(state, sharding.host_to_global(b, mesh))
    pending.append((step + 1, {**m, "train/q_padding": pad["q_padding"],
                               "train/p_padding": pad["p_padding"]}))
    done = step + 1
    end_of_epoch = done % batches.steps_per_epoch == 0
    evaluating = (ec.every and done % ec.every == 0) or end_of_epoch or done == total
    saving = (tc.save_every and done % tc.save_every == 0) or end_of_epoch or done == total
    if done % tc.log_every == 0 or evaluating or saving:
      fetched = jax.device_get(pending)
      elapsed, t0 = time.time() - t0, time.time()
      for s, mm in fetched:
        if not np.isfinite(mm["train/loss"]):
          ckpt.wait()
          raise NonFiniteLoss(f"non-finite training loss {mm['train/loss']} at step {s}; "
                              f"stopped. The last good checkpoint (step {last_good}) is kept in "
                              f"{workdir / 'checkpoints'}")
      for s, mm in fetched:
        metrics.write(s, {**mm, "train/examples_per_s":
                          len(fetched) * tc.global_batch / max(elapsed, 1e-9)})
      last = dict(fetched[-1][1])
      bar.set_postfix(loss=f"{last['train/loss']:.3f}",
                      ex_s=f"{len(fetched) * tc.global_batch / max(elapsed, 1e-9):.1f}")
      pending = []
      ev = do_eval() if evaluating and (dev_batches or val_set) else None
      if ev:
        metrics.write(done, ev)
        last.update(ev)
        t0 = time.time()
      if saving or ev:
        ckpt.save(done, state, meta(done), ev)
        last_good = done
    bar.update(1)
  bar.close()
  ckpt.wait()
  ckpt.close()
  return last
