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
from flax import nnx

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


def model_from_spec(spec: dict, dtype=None):
  """An (untrained) DualEncoder (or Reader, `kind: reader`) with the architecture of `spec`."""
  import jax.numpy as jnp
  from dpr_jax.models.bert import BertConfig, DualEncoder, Encoder
  if spec.get("kind") == "reader":
    from dpr_jax.models.reader import Reader
    return Reader(BertConfig(**spec["bert"]), dtype=dtype or jnp.float32, rngs=nnx.Rngs(0))
  make = lambda: Encoder(BertConfig(**spec["bert"]), pooling=spec["pooling"],
                         projection_dim=spec["projection_dim"],
                         normalize=spec.get("normalize", False), dtype=dtype or jnp.float32,
                         rngs=nnx.Rngs(0))
  q = make()
  return DualEncoder(q, None if spec["tied"] else make())


def load_trained(workdir, which: str = "best", dtype=None, step: int | None = None):
  """A trained DualEncoder from a training workdir: `best` (falls back to latest) or `latest`;
  with `step`, that step of best/ (which=best) or checkpoints/ (latest). -> (model, spec, step)."""
  workdir = Path(workdir).absolute()
  f = workdir / "model.json"
  if not f.is_file():
    raise FileNotFoundError(f"{f} not found: {workdir} is not a dpr-jax training workdir")
  from dpr_jax.data.textio import read_json
  spec = read_json(f, "a model spec (model.json)")
  if not isinstance(spec, dict) or "bert" not in spec:
    raise ValueError(f"{f}: expected a model spec with a 'bert' config, found {str(spec)[:60]}")
  if (spec.get("kind") != "reader" and "normalize" not in spec
      and (workdir / "config.json").is_file()):
    spec["normalize"] = json.loads((workdir / "config.json").read_text())["loss"]["similarity"] == "cosine"
  model = model_from_spec(spec, dtype)
  graphdef, state = nnx.split(model)
  params = nnx.to_pure_dict(state)
  wanted = step
  for sub in (["best", "checkpoints"] if which == "best" and step is None
              else ["best"] if which == "best" else ["checkpoints"]):
    mngr = ocp.CheckpointManager(workdir / sub)
    if wanted is not None and wanted not in mngr.all_steps():
      mngr.close()
      raise FileNotFoundError(f"{workdir / sub}: no step {wanted}; it has {list(mngr.all_steps())}")
    step = wanted if wanted is not None else (
        mngr.best_step() if sub == "best" else mngr.latest_step())
    if step is not None:
      one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
      abstract = {"params": jax.tree.map(
          lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one), params)}
      out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
          abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
          partial_restore=True)))
      mngr.close()
      return nnx.merge(graphdef, out["state"]["params"]), spec, step
    mngr.close()
  raise FileNotFoundError(f"{workdir}: no checkpoint in best/ or checkpoints/")


def load_model(path, *, which: str = "best", pooling: str = "cls", normalize: bool | None = None,
               dtype=None):
  """Any model PATH the tools accept -> (DualEncoder, tokenizer path, description dict).

  PATH: a training workdir (`which` = best or latest checkpoint), an exported DPR pair
  (`question_encoder/` + `ctx_encoder/`, see `dpr_jax.tools.export`), or a Hugging Face BERT / DPR
  directory or hub name (tied: the same BERT encodes questions and passages; `pooling` and
  `normalize` apply), or a sentence-transformers folder or question/ + passage/ pair of them
  (`dpr_jax.models.st_folder`: their own pooling and Dense; `normalize=None` follows their
  Normalize module).
  """
  from dpr_jax.data import resources
  from dpr_jax.models.hf import dpr_pair, load_hf_encoder, resolve_model_dir
  from dpr_jax.models.bert import DualEncoder
  p = Path(path)
  pair = dpr_pair(p)
  if pair is not None:
    # An exported pair (ours or converted from DPR): how it was trained, when we exported it.
    info = pair[2] or {}
    pooling, normalize = info.get("pooling", pooling), info.get("normalize", bool(normalize))
    load = lambda d: load_hf_encoder(d, pooling=pooling, normalize=normalize, dtype=dtype)
    q = load(pair[0])
    model = DualEncoder(q, None if info.get("tied") else load(pair[1]))
    return model, str(pair[0]), {"model": str(p.absolute()), "pooling": pooling,
                                 "normalize": normalize}
  if (p / "model.json").is_file():
    from dpr_jax.data.textio import read_json
    spec = read_json(p / "model.json", "a model spec (model.json)")
    if isinstance(spec, dict) and spec.get("kind") == "reader":
      raise ValueError(f"{p} is a reader workdir; a retriever (dual encoder) is expected here")
    model, spec, step = load_trained(p, which, dtype)
    return model, spec["tokenizer"], {"model": str(p.absolute()), "checkpoint_step": step,
                                      "pooling": spec["pooling"],
                                      "normalize": spec.get("normalize", False)}
  if str(path) == "minilm":
    p = resources.minilm_path()
  d = resolve_model_dir(p)
  from dpr_jax.models.st_folder import load_st_model
  st = load_st_model(d, normalize=normalize, dtype=dtype)  # pooling, Dense, Normalize: the folder's
  if st is not None:
    return st
  normalize = bool(normalize)
  enc = load_hf_encoder(d, pooling=pooling, normalize=normalize, dtype=dtype)
  return DualEncoder(enc), str(d), {"model": str(d.absolute()), "pooling": pooling,
                                    "normalize": normalize}


def fingerprint(params, *settings) -> str:
  """A short hash of all parameter values and of `settings` that change the output (pooling,
  normalisation): identifies the exact function behind a set of embeddings."""
  import hashlib
  import numpy as np
  h = hashlib.sha1(repr(settings).encode())
  for leaf in jax.tree.leaves(params):
    h.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
  return h.hexdigest()[:16]
