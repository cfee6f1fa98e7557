"""The retriever's training: config in, checkpoints and metrics.jsonl out. Resumes from the
workdir. Set-up, the loop and its guarantees are `dpr_jax.training.harness`'s."""
from __future__ import annotations

import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dpr_jax.training import checkpoint, harness, sharding, steps
from dpr_jax.data import examples as data
from dpr_jax.training.harness import NonFiniteLoss  # noqa: F401  (raised by train)
from dpr_jax.training.data_files import prepared_files
from dpr_jax.training.inference import embed_bucketed
from dpr_jax.training.loading import build_dual_encoder, tokenizer_path
from dpr_jax.training.loss import positive_ranks, scores
from dpr_jax.models.tokenization import Tokenizer

log = logging.getLogger("dpr_jax")
# What defines a retriever run, but for `harness.FREE`: a re-run on a workdir that recorded other
# values is refused (the seed and global batch map a step to its batch; the optimizer, the
# updates).
IDENTITY = ("model", "data", "loss", "optim", "train")


def evaluate(params, fns, dev_batches, val_set, tok, dc, ec, mesh, similarity, temperature):
  """DPR's validation: in-batch NLL over dev batches, and the average rank of each dev
  question's positive among all dev passages."""
  out = {}
  if dev_batches is not None:
    sums = np.zeros(3)
    for i in range(min(dev_batches.steps_per_epoch, ec.max_batches)):
      b = sharding.host_to_global(data.global_batch_arrays(
          dev_batches, tok, i, dc.question_max_length, dc.passage_max_length, dc.bucket_multiple,
          jax.process_index(), jax.process_count(), dc.question_groups,
          dc.question_bucket_multiple)[0], mesh)
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


def _load_data(config, workdir: Path):
  """-> (TrainBatches, dev TrainBatches or None, validation set or None)."""
  dc, tc, ec = config.data, config.train, config.eval
  train_files, dev_file = prepared_files(dc, workdir)
  weights = ([float(w) for w in dc.train_weights.split(",")] if dc.train_weights
             else [1.0] * len(train_files))
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
  return batches, dev_batches, val_set


def _model(config):
  mc, lc = config.model, config.loss
  # Cosine-trained models emit unit vectors, so that every index's inner product is the
  # similarity they were trained with.
  return build_dual_encoder(mc.init, pooling=mc.pooling, projection_dim=mc.projection_dim,
                            normalize=lc.similarity == "cosine", tied=mc.tied, dtype=mc.dtype,
                            remat=mc.remat, attention=mc.attention, seed=config.train.seed,
                            bert=dict(mc.bert))


def train(config, workdir) -> dict:
  """Trains (or resumes) a dual encoder as `config` says. Returns the last metrics."""
  workdir = Path(workdir).absolute()
  harness.check_workdir(config, workdir, IDENTITY)
  mc, dc, tc, lc, ec = config.model, config.data, config.train, config.loss, config.eval
  mesh = sharding.make_mesh(fsdp=tc.fsdp)
  n_dev = sharding.batch_size_multiple(mesh)
  if tc.global_batch % (n_dev * dc.question_groups):
    raise ValueError(f"global batch {tc.global_batch} must be a multiple of the device count "
                     f"{n_dev} x data.question_groups {dc.question_groups}")
  if dc.question_groups > 1 and tc.grad_cache_chunk:
    raise ValueError(f"data.question_groups={dc.question_groups} does not combine with "
                     f"train.grad_cache_chunk={tc.grad_cache_chunk}: use question groups "
                     "(grad_cache_chunk=0) or gradient caching (question_groups=1)")
  workdir.mkdir(parents=True, exist_ok=True)
  batches, dev_batches, val_set = _load_data(config, workdir)
  total = tc.max_steps or tc.epochs * batches.steps_per_epoch
  model = _model(config)
  tok = Tokenizer(tokenizer_path(mc.init, mc.tokenizer), dc.question_max_length,
                  dc.passage_max_length)
  spec = checkpoint.model_spec(model, pooling=mc.pooling, tokenizer=tok.path)
  kw = dict(similarity=lc.similarity, temperature=lc.temperature)
  make_step = lambda g, tx, sched, shard: steps.make_train_step(
      g, tx, sched, mesh, grad_cache_chunk=tc.grad_cache_chunk, state_shardings=shard, **kw)
  s = harness.setup(model, make_step, mesh=mesh, workdir=workdir, train_cfg=tc,
                    optim_cfg=config.optim, total_steps=total)
  del model
  if s.start:
    log.info("resumed from step %d (epoch %d, batch %d)", s.start, *batches.position(s.start))
  harness.write_records(workdir, config, spec)
  fns = {"eval_loss": steps.make_eval_loss(s.graphdef, mesh, **kw),
         "encode_q": steps.make_encode(s.graphdef, "question"),
         "encode_p": steps.make_encode(s.graphdef, "passage")}
  do_eval = ((lambda params: evaluate(params, fns, dev_batches, val_set, tok, dc, ec, mesh, **kw))
             if dev_batches or val_set else None)

  def batch(step):  # every process buckets the global batch alike; padding fractions logged
    b, pad = data.global_batch_arrays(batches, tok, step, dc.question_max_length,
                                      dc.passage_max_length, dc.bucket_multiple,
                                      jax.process_index(), jax.process_count(),
                                      dc.question_groups, dc.question_bucket_multiple)
    return b, {"train/q_padding": pad["q_padding"], "train/p_padding": pad["p_padding"]}

  def meta(step):
    epoch, i = batches.position(step)
    return {"step": step, "epoch": epoch, "batch_in_epoch": i, "seed": tc.seed,
            "steps_per_epoch": batches.steps_per_epoch}

  schedule = harness.Schedule(total, log_every=tc.log_every, eval_every=ec.every,
                              save_every=tc.save_every, steps_per_epoch=batches.steps_per_epoch,
                              eval_at_start=ec.at_start)
  return harness.run(s, batch=batch, evaluate=do_eval, meta=meta, schedule=schedule, mesh=mesh,
                     workdir=workdir, throughput=("train/examples_per_s", tc.global_batch))
