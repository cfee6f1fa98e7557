"""Models from names and paths: the factory training starts from, and the loader of any model
PATH the tools accept.

A PATH is one of: a training workdir (`model.json` + Orbax checkpoints), an exported DPR pair
(`question_encoder/` + `ctx_encoder/`, see `dpr_jax.tools.export`), a Hugging Face BERT / DPR
folder or hub name, a sentence-transformers folder (its `Normalize` module is followed), or
`minilm` (the packaged all-MiniLM-L6-v2). Training also takes `random` (a fresh BERT).
Checkpoint files are read by `dpr_jax.training.checkpoint`; this module never touches Orbax.
"""
from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
from flax import nnx

from dpr_jax.data import resources
from dpr_jax.models.bert import BertConfig, DualEncoder, Encoder
from dpr_jax.models.hf import dpr_pair, load_hf_encoder, resolve_model_dir
from dpr_jax.models.reader import Reader
from dpr_jax.training import checkpoint

DTYPES = {"float32": jnp.float32, "fp32": jnp.float32, "bfloat16": jnp.bfloat16,
          "bf16": jnp.bfloat16}


def compute_dtype(name) -> jnp.dtype:
  """The config's `model.dtype` ("float32"/"fp32", "bfloat16"/"bf16") -> a jnp dtype."""
  if name is None:
    return jnp.float32
  if not isinstance(name, str):
    return name
  if name not in DTYPES:
    raise ValueError(f"model.dtype must be one of {sorted(DTYPES)}, got {name!r}")
  return DTYPES[name]


def _local(init: str) -> Path:
  """`minilm` -> the packaged model's folder; anything else as given."""
  return resources.minilm_path() if init == "minilm" else Path(init)


def _is_workdir(init: str) -> bool:
  return init not in ("minilm", "random") and (Path(init) / "model.json").is_file()


def tokenizer_path(init: str, tokenizer: str = "") -> str:
  """The tokenizer for a model started from `init`: `tokenizer` if set; MiniLM's for `minilm`
  and `random`; the question encoder's folder of an exported pair; else the model folder."""
  if tokenizer:
    return str(tokenizer)
  if init in ("minilm", "random"):
    return str(resources.minilm_path())
  if _is_workdir(init):
    return read_spec(init)["tokenizer"]
  pair = dpr_pair(init)
  if pair is not None:
    return str(pair[0])
  return str(resolve_model_dir(init))


def build_dual_encoder(init: str, *, pooling: str = "cls", projection_dim: int = 0,
                       normalize: bool = False, tied: bool = False, dtype=None,
                       remat: bool = False, attention: str = "auto", seed: int = 0,
                       bert: dict | None = None) -> DualEncoder:
  """The dual encoder to train. `init`: a Hugging Face BERT/DPR folder or hub name, an exported
  DPR pair (its question and context encoders initialise ours; tied: the question encoder),
  a dpr-jax training workdir (its best checkpoint: a round of training that continues another;
  its pooling, projection and tying must be the ones asked for), `minilm`, or `random` (a fresh
  BERT with `bert` overrides of `BertConfig`). Separate encoders both start from `init`, as in
  DPR. `dtype`: compute dtype (name or jnp dtype)."""
  if _is_workdir(init):
    return _continue(init, dict(pooling=pooling, projection_dim=projection_dim, tied=tied,
                                normalize=normalize), dtype=compute_dtype(dtype), remat=remat,
                     attention=attention)
  kw = dict(pooling=pooling, normalize=normalize, dtype=compute_dtype(dtype), remat=remat,
            attention=attention)
  pair = dpr_pair(init) if init not in ("random", "minilm") else None
  if pair is not None:
    # projection_dim 0 keeps the checkpoint's own projection (DPR's `projection_dim`), if any.
    load = lambda d: load_hf_encoder(d, projection_dim=projection_dim or None, seed=seed, **kw)
    q = load(pair[0])
    return DualEncoder(q, None if tied else load(pair[1]))
  if init == "random":
    make = lambda: Encoder(BertConfig(**(bert or {})), projection_dim=projection_dim,
                           rngs=nnx.Rngs(seed), **kw)
  else:
    make = lambda: load_hf_encoder(_local(init), projection_dim=projection_dim, seed=seed, **kw)
  q = make()
  return DualEncoder(q, None if tied else make())


def _continue(workdir: str, asked: dict, **kw) -> DualEncoder:
  """The best checkpoint of a retriever workdir, built with `kw` (dtype, remat, attention)."""
  spec = read_spec(workdir)
  if spec.get("kind") == "reader":
    raise ValueError(f"model.init {workdir} is a reader workdir; a retriever is expected")
  found = {k: spec.get(k, False if k == "normalize" else None) for k in asked}
  if found != asked:
    diff = {k: (asked[k], found[k]) for k in asked if asked[k] != found[k]}
    raise ValueError(f"model.init {workdir}: its model differs from the config's "
                     f"(asked, found): {diff}")
  return load_trained(workdir, "best", **kw)[0]


def build_reader(init: str, *, dtype=None, remat: bool = False, attention: str = "auto",
                 seed: int = 0, bert: dict | None = None) -> Reader:
  """A reader whose BERT starts from `init` (HF BERT folder or hub name, `minilm`, `random`)."""
  kw = dict(dtype=compute_dtype(dtype), remat=remat, attention=attention)
  if init == "random":
    return Reader(BertConfig(**(bert or {})), rngs=nnx.Rngs(seed), **kw)
  enc = load_hf_encoder(_local(init), seed=seed, **kw)
  r = Reader(enc.bert.cfg, rngs=nnx.Rngs(seed), **kw)
  r.bert = enc.bert
  return r


def model_from_spec(spec: dict, dtype=None, **kw):
  """An (untrained) DualEncoder (or Reader, `kind: reader`) with the architecture of `spec`;
  `kw`: `remat`, `attention`."""
  dtype = compute_dtype(dtype)
  if spec.get("kind") == "reader":
    return Reader(BertConfig(**spec["bert"]), dtype=dtype, rngs=nnx.Rngs(0), **kw)
  make = lambda: Encoder(BertConfig(**spec["bert"]), pooling=spec["pooling"],
                         projection_dim=spec["projection_dim"],
                         normalize=spec.get("normalize", False), dtype=dtype, rngs=nnx.Rngs(0),
                         **kw)
  q = make()
  return DualEncoder(q, None if spec["tied"] else make())


def read_spec(workdir) -> dict:
  """A training workdir's `model.json`."""
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
    cfg = json.loads((workdir / "config.json").read_text())
    spec["normalize"] = cfg["loss"]["similarity"] == "cosine"
  return spec


def load_trained(workdir, which: str = "best", dtype=None, step: int | None = None, **kw):
  """A trained model (DualEncoder or Reader) from a training workdir: `best` (falls back to
  latest) or `latest`; with `step`, that step of best/ (which=best) or checkpoints/ (latest);
  `kw`: `remat`, `attention`. -> (model, spec, step)."""
  spec = read_spec(workdir)
  graphdef, state = nnx.split(model_from_spec(spec, dtype, **kw))
  params, got = checkpoint.restore_params(workdir, nnx.to_pure_dict(state), which, step)
  return nnx.merge(graphdef, params), spec, got


def load_model(path, *, which: str = "best", pooling: str = "cls", normalize: bool | None = None,
               dtype=None):
  """Any model PATH (see the module docstring) -> (DualEncoder, tokenizer path, description).

  A plain HF folder or hub name is tied (the same BERT encodes questions and passages) and
  takes `pooling`; `normalize=None` follows a sentence-transformers `Normalize` module when the
  folder has one. A workdir and an exported pair carry their own pooling and normalisation.
  """
  p = Path(path)
  pair = dpr_pair(p)
  if pair is not None:
    info = pair[2] or {}
    pooling, normalize = info.get("pooling", pooling), info.get("normalize", bool(normalize))
    load = lambda d: load_hf_encoder(d, pooling=pooling, normalize=normalize,
                                     dtype=compute_dtype(dtype))
    model = DualEncoder(load(pair[0]), None if info.get("tied") else load(pair[1]))
    return model, str(pair[0]), {"model": str(p.absolute()), "pooling": pooling,
                                 "normalize": normalize}
  if (p / "model.json").is_file():
    if read_spec(p).get("kind") == "reader":
      raise ValueError(f"{p} is a reader workdir; a retriever (dual encoder) is expected here")
    model, spec, step = load_trained(p, which, dtype)
    return model, spec["tokenizer"], {"model": str(p.absolute()), "checkpoint_step": step,
                                      "pooling": spec["pooling"],
                                      "normalize": spec.get("normalize", False)}
  d = resolve_model_dir(_local(str(path)))
  from dpr_jax.models.st_folder import load_st_model
  st = load_st_model(d, normalize=normalize, dtype=compute_dtype(dtype))  # the folder's pooling,
  if st is not None:                                                       # Dense and Normalize
    return st
  normalize = bool(normalize)
  enc = load_hf_encoder(d, pooling=pooling, normalize=normalize, dtype=compute_dtype(dtype))
  return DualEncoder(enc), str(d), {"model": str(d.absolute()), "pooling": pooling,
                                    "normalize": normalize}
