"""Training checkpoints (Orbax) and the model spec that lets other tools rebuild the model.

`<workdir>/checkpoints/<step>`: the last N periodic / end-of-epoch saves.
`<workdir>/best/<step>`: the best by validation average rank (lower is better).
Each holds `state` (params, optimizer state, step, RNG) and `meta` (JSON: data position, metrics).
`<workdir>/model.json` describes the architecture (BERT config, pooling, projection, tied,
tokenizer) so that `encode.py` and `export` can rebuild it without the training config.
"""
from __future__ import annotations

import json
from pathlib import Path

import jax
import orbax.checkpoint as ocp

BEST_METRIC = "eval/avg_rank"


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


class Checkpointer:
  """`best_metric` / `best_mode`: what `best/` keeps (retriever: lowest average rank; reader:
  highest exact match)."""

  def __init__(self, workdir, keep: int = 3, best_metric: str = BEST_METRIC,
               best_mode: str = "min"):
    workdir = Path(workdir).absolute()
    self.best_metric = best_metric
    self.last = ocp.CheckpointManager(
        workdir / "checkpoints", options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
    self.best = ocp.CheckpointManager(
        workdir / "best", options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, best_fn=lambda m: m[best_metric], best_mode=best_mode))

  def latest_step(self) -> int | None:
    return self.last.latest_step()

  def save(self, step: int, state, meta: dict, metrics: dict | None = None):
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    if step not in self.last.all_steps():
      self.last.save(step, args=args, force=True)
    if (metrics is not None and self.best_metric in metrics
        and step not in self.best.all_steps()):
      self.best.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                   meta=ocp.args.JsonSave(meta)),
                     metrics={self.best_metric: float(metrics[self.best_metric])}, force=True)

  def restore(self, step: int, like_state, best: bool = False):
    """-> (state laid out like `like_state`, meta)."""
    mngr = self.best if best else self.last
    out = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_abstract(like_state)), meta=ocp.args.JsonRestore()))
    return out["state"], out["meta"]

  def wait(self):
    self.last.wait_until_finished()
    self.best.wait_until_finished()

  def close(self):
    self.last.close()
    self.best.close()


def model_spec(model, *, pooling: str, tokenizer: str) -> dict:
  enc = model.question
  return {"bert": enc.bert.cfg.to_hf(), "pooling": pooling, "projection_dim": enc.projection_dim,
          "normalize": enc.normalize, "tied": model.tied, "tokenizer": str(tokenizer)}


def write_model_spec(workdir, spec: dict):
  Path(workdir, "model.json").write_text(json.dumps(spec, indent=1))


def _subdirs(which: str, step: int | None) -> list[str]:
  if which not in ("best", "latest"):
    raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
  if which == "best":
    return ["best", "checkpoints"] if step is None else ["best"]
  return ["checkpoints"]


def restore_params(workdir, params_like, which: str = "best", step: int | None = None):
  """The parameters of a training workdir's checkpoint, on one local device: `best` (falls back
  to the latest) or `latest`; with `step`, that step of best/ (which=best) or checkpoints/
  (latest). `params_like`: a pytree of arrays of the expected shapes. -> (params, step)."""
  workdir = Path(workdir).absolute()
  one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = {"params": jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one), params_like)}
  for sub in _subdirs(which, step):
    mngr = ocp.CheckpointManager(workdir / sub)
    try:
      if step is not None and step not in mngr.all_steps():
        raise FileNotFoundError(f"{workdir / sub}: no step {step}; it has "
                                f"{list(mngr.all_steps())}")
      got = step if step is not None else (
          mngr.best_step() if sub == "best" else mngr.latest_step())
      if got is not None:
        out = mngr.restore(got, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
            partial_restore=True)))
        return out["state"]["params"], got
    finally:
      mngr.close()
  raise FileNotFoundError(f"{workdir}: no checkpoint in best/ or checkpoints/")


def fingerprint(params, *settings) -> str:
  """A short hash of all parameter values and of `settings` that change the output (pooling,
  normalisation): identifies the exact function behind a set of embeddings."""
  import hashlib
  import numpy as np
  h = hashlib.sha1(repr(settings).encode())
  for leaf in jax.tree.leaves(params):
    h.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
  return h.hexdigest()[:16]
