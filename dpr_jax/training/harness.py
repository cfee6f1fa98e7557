"""The training harness shared by the retriever (`training.loop`) and the reader (`reader.train`).

A trainer supplies the model, its compiled step, a batch function `(step) -> this process's
slice of the global batch`, and an optional validation function; the harness does the rest the
same way for both:

- the workdir check: a re-run whose recorded config differs in a field that defines the run
  (`FREE` lists those that do not) is refused before anything is written
  (`--config.train.allow_config_change=True` or a fresh workdir);
- set-up: the mesh's parameter placement, optimizer, checkpointer, resume;
- the loop: log / eval / save steps (`every`, `save_every`, `log_every` of 0 mean "never"),
  the non-finite guard (every step's loss is checked; the step never updates parameters with a
  non-finite loss, and the run stops keeping the last good checkpoint);
- process-0-only writes of `config.json`, `model.json` and `metrics.jsonl`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Callable

import jax
import numpy as np
from flax import nnx
from tqdm import tqdm

from dpr_jax.training import checkpoint, events, sharding, steps

log = logging.getLogger("dpr_jax")


class NonFiniteLoss(FloatingPointError):
  pass


class ConfigChangeError(ValueError):
  """A re-run on a workdir whose recorded config differs in fields that define the run."""


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[prefix + k] = v
  return out


# Config fields that may change between runs on one workdir (a field, or a whole section): when
# and what is logged, validated and saved, how long the run is, and how a step is laid out on the
# devices (sharding, gradient caching, rematerialisation compute the same step). Every other
# field of the checked sections defines the run: the model, the data and its order (seed,
# global batch), the loss and the optimizer.
FREE = ("train.epochs", "train.max_steps", "train.log_every", "train.save_every",
        "train.keep_checkpoints", "train.fsdp", "train.grad_cache_chunk",
        "train.allow_config_change", "model.remat", "eval")


def _free(key: str, free: tuple[str, ...]) -> bool:
  return any(key == f or key.startswith(f + ".") for f in free)


def check_workdir(config, workdir, sections: tuple[str, ...], record: str = "config.json",
                  free: tuple[str, ...] = FREE) -> None:
  """Refuses (ConfigChangeError) a run whose `sections` of the config (e.g. model, data, train)
  differ from those recorded in `<workdir>/<record>` outside the `free` fields, naming every
  differing field with its recorded and new values. Reads only: the caller records the new
  config once the run starts, so an overridden change (`train.allow_config_change`) is the
  recorded config of the next run."""
  f = Path(workdir) / record
  if not f.is_file() or config.train.get("allow_config_change", False):
    return
  try:
    recorded = json.loads(f.read_text())
  except json.JSONDecodeError as e:
    raise ConfigChangeError(f"{f}: not valid JSON ({e}); pass "
                            "--config.train.allow_config_change=True to overwrite it") from e
  now = json.loads(config.to_json_best_effort())
  old = _flat({s: recorded.get(s, {}) for s in sections})
  new = _flat({s: now.get(s, {}) for s in sections})
  show = lambda d, k: repr(d[k]) if k in d else "(absent)"
  diff = [f"{k}: recorded {show(old, k)}, now {show(new, k)}"
          for k in sorted(set(old) | set(new))
          if not _free(k, free) and (k in old, old.get(k)) != (k in new, new.get(k))]
  if diff:
    raise ConfigChangeError(
        f"{f}: the workdir was run with another config (" + "; ".join(diff) + "); use a fresh "
        "workdir, or pass --config.train.allow_config_change=True to continue it with this "
        "config")


def write_records(workdir: Path, config, spec: dict) -> None:
  """config.json and model.json, from process 0 only."""
  if jax.process_index() == 0:
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=1))
    checkpoint.write_model_spec(workdir, spec)


def local_rows(batch: dict[str, np.ndarray], process_index: int | None = None,
               process_count: int | None = None) -> dict[str, np.ndarray]:
  """This process's contiguous share of the rows of a global batch (what
  `sharding.host_to_global` expects from each process)."""
  pi = jax.process_index() if process_index is None else process_index
  pc = jax.process_count() if process_count is None else process_count
  n = len(next(iter(batch.values())))
  if n % pc:
    raise ValueError(f"a batch of {n} rows does not split over {pc} processes")
  return {k: v[pi * n // pc: (pi + 1) * n // pc] for k, v in batch.items()}


class Metrics:
  """metrics.jsonl (process 0). On resume, lines beyond the restored step are dropped."""

  def __init__(self, workdir: Path, resume_step: int):
    self.path = workdir / "metrics.jsonl"
    self.on = jax.process_index() == 0
    if self.on and self.path.exists():
      keep = [l for l in self.path.read_text().splitlines()
              if l.strip() and json.loads(l)["step"] <= resume_step]
      self.path.write_text("".join(l + "\n" for l in keep))
    self.events = events.open_writer(workdir, resume_step) if self.on else None  # TensorBoard

  def write(self, step: int, values: dict):
    if self.on:
      with open(self.path, "a") as f:
        f.write(json.dumps({"step": step, **{k: float(v) for k, v in values.items()}}) + "\n")
      if self.events:
        self.events.write(step, values)


@dataclasses.dataclass
class Setup:
  """A placed training state, its compiled step and checkpointer; `start`: the resumed step."""
  graphdef: nnx.GraphDef
  state: dict
  step_fn: Callable
  ckpt: checkpoint.Checkpointer
  start: int
  meta: dict | None


def setup(model: nnx.Module, make_step: Callable, *, mesh, workdir: Path, train_cfg, optim_cfg,
          total_steps: int, best_metric: str = checkpoint.BEST_METRIC,
          best_mode: str = "min") -> Setup:
  """Places `model`'s parameters on `mesh`, builds the optimizer and the step
  (`make_step(graphdef, tx, schedule, state_shardings)`), and restores the latest checkpoint of
  `workdir` if there is one."""
  tc, oc = train_cfg, optim_cfg
  graphdef, state_ = nnx.split(model)
  shard = nnx.to_pure_dict(sharding.param_shardings(state_, mesh))
  params = jax.device_put(nnx.to_pure_dict(state_), shard)
  del state_
  schedule = steps.make_schedule(oc.lr, oc.warmup_steps, total_steps)
  tx = steps.make_optimizer(schedule, weight_decay=oc.weight_decay, clip_norm=oc.clip_norm,
                            b1=oc.b1, b2=oc.b2, eps=oc.eps)
  state, state_shard = steps.place_state(params, tx, tc.seed, mesh, shard)
  step_fn = make_step(graphdef, tx, schedule, state_shard)
  ckpt = checkpoint.Checkpointer(workdir, keep=tc.keep_checkpoints, best_metric=best_metric,
                                 best_mode=best_mode)
  start, meta = ckpt.latest_step() or 0, None
  if start:
    state, meta = ckpt.restore(start, state)
  return Setup(graphdef, state, step_fn, ckpt, start, meta)


@dataclasses.dataclass
class Schedule:
  """When the loop logs, validates and saves. 0 means never (the last step always does all
  three); `steps_per_epoch` > 0 also validates and saves at the end of each epoch."""
  total: int
  log_every: int = 0
  eval_every: int = 0
  save_every: int = 0
  steps_per_epoch: int = 0
  eval_at_start: bool = False

  def after(self, done: int) -> tuple[bool, bool, bool]:
    """-> (log, eval, save) after step `done`."""
    at = lambda every: bool(every) and done % every == 0
    last = done == self.total or at(self.steps_per_epoch)
    evaluating, saving = at(self.eval_every) or last, at(self.save_every) or last
    return at(self.log_every) or evaluating or saving, evaluating, saving


def _check_finite(step: int, metrics: dict, ckpt, last_good: int, workdir: Path):
  loss = float(jax.device_get(metrics["train/loss"]))
  if not np.isfinite(loss):
    raise NonFiniteLoss(f"non-finite training loss {loss} at step {step}; stopped. The last "
                        f"good checkpoint (step {last_good}) is kept in "
                        f"{workdir / 'checkpoints'}")


def write_train_metrics(metrics: Metrics, fetched: list, throughput: tuple[str, int],
                        elapsed: float) -> dict:
  """One line per step of `fetched` [(step, metrics)] with the throughput over them; -> the
  last step's metrics."""
  name, per_step = throughput
  rate = len(fetched) * per_step / max(elapsed, 1e-9)
  for s, m in fetched:
    metrics.write(s, {**m, name: rate})
  return {**{k: float(v) for k, v in fetched[-1][1].items()}, name: rate}


def run(s: Setup, *, batch: Callable[[int], dict], evaluate: Callable[[dict], dict] | None,
        meta: Callable[[int], dict], schedule: Schedule, mesh, workdir: Path,
        throughput: tuple[str, int], desc: str = "train") -> dict:
  """The loop from `s.start` to `schedule.total`. `batch(step)`: this process's slice of step's
  global batch (numpy), or (that slice, host metrics to log with the step); `evaluate(params)`: validation metrics; `meta(step)`: JSON saved with
  each checkpoint; `throughput`: (metric name, examples per step). -> the last metrics."""
  metrics = Metrics(workdir, s.start)
  if s.start == 0 and schedule.eval_at_start and evaluate:
    metrics.write(0, evaluate(s.state["params"]))
  pending, last, t0, last_good = [], {}, time.time(), s.start
  bar = tqdm(total=schedule.total, initial=s.start, desc=desc, unit="step", mininterval=1,
             disable=jax.process_index() != 0)
  try:
    for step in range(s.start, schedule.total):
      b = batch(step)
      b, extra = b if isinstance(b, tuple) else (b, {})
      s.state, m = s.step_fn(s.state, sharding.host_to_global(b, mesh))
      pending.append((step + 1, {**m, **extra}))
      if len(pending) >= 2:  # the previous step's loss, while this one runs
        _check_finite(*pending[-2], s.ckpt, last_good, workdir)
      done = step + 1
      logging_, evaluating, saving = schedule.after(done)
      if logging_:
        fetched = jax.device_get(pending)
        for st, mm in fetched:
          _check_finite(st, mm, s.ckpt, last_good, workdir)
        last = write_train_metrics(metrics, fetched, throughput, time.time() - t0)
        bar.set_postfix(loss=f"{last['train/loss']:.3f}")
        pending = []
        ev = evaluate(s.state["params"]) if evaluating and evaluate else None
        if ev:
          metrics.write(done, ev)
          last.update(ev)
        if saving or ev:
          s.ckpt.save(done, s.state, meta(done), ev)
          last_good = done
        t0 = time.time()
      bar.update(1)
  finally:
    bar.close()
    s.ckpt.wait()
    s.ckpt.close()
  return last
