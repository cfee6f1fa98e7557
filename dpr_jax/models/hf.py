"""Hugging Face checkpoint files <-> our Flax BERT parameters.

Reads a BERT (or DPR) model directory: `config.json` plus `model.safetensors` (possibly sharded,
with `model.safetensors.index.json`) or `pytorch_model.bin`. With network access a hub name
(`bert-base-uncased`) is fetched through the Hugging Face cache. The name table below is the one
place that knows transformers' tensor names; export (`dpr_jax.tools.export`) uses it in reverse.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
from flax import nnx

from dpr_jax.models.bert import Bert, BertConfig

BERT_MODEL_TYPES = ("bert", "dpr")
_WORD_EMB = "embeddings.word_embeddings.weight"


class CheckpointError(ValueError):
  """A checkpoint that is not what was asked for: names the file, tensor and shapes."""


def resolve_model_dir(name_or_path: str | os.PathLike) -> Path:
  """A local model directory, or a hub name downloaded into the Hugging Face cache."""
  p = Path(name_or_path).expanduser()
  if p.is_dir():
    return p
  if p.exists():
    raise CheckpointError(f"{p} is a file; expected a model directory holding config.json")
  if str(name_or_path).startswith((".", "/", "~")):
    raise CheckpointError(f"model directory {p} does not exist")
  try:
    from huggingface_hub import snapshot_download
    return Path(snapshot_download(str(name_or_path), allow_patterns=[
        "*.json", "*.safetensors", "*.txt", "pytorch_model.bin"]))
  except Exception as e:  # offline, unknown repo, ...
    raise CheckpointError(f"{name_or_path!r} is not a local directory and could not be fetched "
                          f"from the Hugging Face hub ({type(e).__name__}: {e})") from e


def read_config(model_dir: Path) -> dict:
  f = Path(model_dir) / "config.json"
  if not f.is_file():
    raise CheckpointError(f"{f} not found: not a Hugging Face model directory")
  try:
    return json.loads(f.read_text())
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{f}: not valid JSON ({e})") from e


def bert_config(hf: dict, source: str = "config.json") -> BertConfig:
  """Validates that a Hugging Face config describes the BERT we implement."""
  mt = hf.get("model_type")
  if mt not in BERT_MODEL_TYPES:
    raise CheckpointError(f"{source}: model_type {mt!r} is not BERT-shaped; "
                          f"expected one of {BERT_MODEL_TYPES}")
  if hf.get("hidden_act", "gelu") != "gelu":
    raise CheckpointError(f"{source}: hidden_act {hf['hidden_act']!r}; only exact 'gelu' is "
                          "implemented")
  if hf.get("position_embedding_type", "absolute") != "absolute":
    raise CheckpointError(f"{source}: position_embedding_type "
                          f"{hf['position_embedding_type']!r}; only 'absolute' is implemented")
  return BertConfig.from_hf(hf)


def read_tensors(model_dir: Path) -> dict[str, np.ndarray]:
  """All tensors of a checkpoint directory as numpy arrays, by their transformers name."""
  d = Path(model_dir)
  if (d / "model.safetensors").is_file():
    from safetensors.numpy import load_file
    return load_file(str(d / "model.safetensors"))
  if (d / "model.safetensors.index.json").is_file():
    from safetensors.numpy import load_file
    index = json.loads((d / "model.safetensors.index.json").read_text())
    out = {}
    for shard in sorted(set(index["weight_map"].values())):
      out.update(load_file(str(d / shard)))
    return out
  if (d / "pytorch_model.bin").is_file():
    try:
      import torch
    except ImportError as e:
      raise CheckpointError(f"{d / 'pytorch_model.bin'}: reading PyTorch pickles needs torch; "
                            "install torch or convert the checkpoint to model.safetensors") from e
    sd = torch.load(d / "pytorch_model.bin", map_location="cpu", weights_only=True)
    return {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in sd.items()}
  raise CheckpointError(f"{d}: no model.safetensors, model.safetensors.index.json or "
                        "pytorch_model.bin")


def bert_prefixes(tensors: dict[str, np.ndarray]) -> list[str]:
  """Prefixes under which a BERT lives: '' (BertModel), 'bert.', 'ctx_encoder.bert_model.', ..."""
  return sorted(k[: -len(_WORD_EMB)] for k in tensors if k.endswith(_WORD_EMB))


# Our parameter path (inside `Bert`) -> (transformers name, transposed?). Linear kernels are
# [in, out] here and [out, in] in PyTorch.
_LAYER = {
    ("attention", "query"): "attention.self.query",
    ("attention", "key"): "attention.self.key",
    ("attention", "value"): "attention.self.value",
    ("attention_output",): "attention.output.dense",
    ("attention_norm",): "attention.output.LayerNorm",
    ("intermediate",): "intermediate.dense",
    ("output",): "output.dense",
    ("output_norm",): "output.LayerNorm",
}
_TOP = {
    ("word_embeddings",): "embeddings.word_embeddings",
    ("position_embeddings",): "embeddings.position_embeddings",
    ("token_type_embeddings",): "embeddings.token_type_embeddings",
    ("embeddings_norm",): "embeddings.LayerNorm",
}
_LEAF = {"kernel": ("weight", True), "bias": ("bias", False), "scale": ("weight", False),
         "embedding": ("weight", False)}


def hf_name(path: tuple) -> tuple[str, bool]:
  """('layers', 3, 'attention', 'query', 'kernel') -> ('encoder.layer.3.attention.self.query.weight', True)."""
  *mod, leaf = [str(p) for p in path]
  suffix, transpose = _LEAF[leaf]
  if mod[0] == "layers":
    return f"encoder.layer.{mod[1]}.{_LAYER[tuple(mod[2:])]}.{suffix}", transpose
  return f"{_TOP[tuple(mod)]}.{suffix}", transpose


def _lookup(tensors, name):
  """LayerNorm weights were called gamma/beta in older (TF-converted) checkpoints."""
  if name in tensors:
    return tensors[name]
  legacy = re.sub(r"LayerNorm\.weight$", "LayerNorm.gamma", re.sub(r"LayerNorm\.bias$",
                                                                      "LayerNorm.beta", name))
  return tensors.get(legacy)


def load_bert_params(bert: Bert, tensors: dict[str, np.ndarray], prefix: str,
                     source: str) -> None:
  """Overwrites every parameter of `bert` with `tensors[prefix + name]`; checks every shape."""
  state = nnx.state(bert, nnx.Param)
  for path, var in nnx.to_flat_state(state):
    name, transpose = hf_name(path)
    t = _lookup(tensors, prefix + name)
    if t is None:
      raise CheckpointError(f"{source}: tensor {prefix + name!r} is missing "
                            f"(expected shape {tuple(reversed(var.get_value().shape)) if transpose else var.get_value().shape})")
    t = np.asarray(t, dtype=np.float32)
    if transpose:
      t = t.T
    if t.shape != var.get_value().shape:
      shown = tuple(reversed(t.shape)) if transpose else t.shape
      want = tuple(reversed(var.get_value().shape)) if transpose else var.get_value().shape
      raise CheckpointError(f"{source}: tensor {prefix + name!r} has shape {shown}, "
                            f"expected {want}")
    var.set_value(t)
  nnx.update(bert, state)


def bert_tensors(bert: Bert, prefix: str = "") -> dict[str, np.ndarray]:
  """Our parameters under transformers' names (PyTorch layout), for export."""
  out = {}
  for path, var in nnx.to_flat_state(nnx.state(bert, nnx.Param)):
    name, transpose = hf_name(path)
    v = np.asarray(var.get_value(), dtype=np.float32)
    out[prefix + name] = np.ascontiguousarray(v.T if transpose else v)
  return out


def dpr_pair(path) -> tuple[Path, Path, dict | None] | None:
  """A DPR pair directory (`question_encoder/` and `ctx_encoder/`, each a Hugging Face DPR
  model, as `dpr_jax.tools.export` writes) -> (question dir, context dir, export info or None)."""
  p = Path(path)
  q, c = p / "question_encoder", p / "ctx_encoder"
  if not ((q / "config.json").is_file() and (c / "config.json").is_file()):
    return None
  info = p / "dpr_jax_export.json"
  return q, c, json.loads(info.read_text()) if info.is_file() else None


def load_hf_encoder(name_or_path, *, pooling: str = "cls", projection_dim: int | None = None,
                    normalize: bool = False, dtype=None, remat: bool = False,
                    attention: str = "auto", prefix: str | None = None, seed: int = 0):
  """An `Encoder` initialised from a Hugging Face BERT or DPR directory (or hub name).

  `prefix` picks one BERT when a file holds several (a DPR bi-encoder); by default there must be
  exactly one. `projection_dim=None` takes DPR's `projection_dim` from the config (0 for BERT);
  a projection absent from the checkpoint is freshly initialised.
  """
  import jax.numpy as jnp
  from dpr_jax.models.bert import Encoder
  d = resolve_model_dir(name_or_path)
  hf = read_config(d)
  cfg = bert_config(hf, str(d / "config.json"))
  tensors = read_tensors(d)
  found = bert_prefixes(tensors)
  if prefix is None:
    if len(found) != 1:
      raise CheckpointError(f"{d}: expected one BERT in the checkpoint, found prefixes {found}; "
                            "pass prefix=")
    prefix = found[0]
  elif prefix not in found:
    raise CheckpointError(f"{d}: no BERT under prefix {prefix!r}; found {found}")
  if projection_dim is None:
    projection_dim = int(hf.get("projection_dim", 0) or 0)
  enc = Encoder(cfg, pooling=pooling, projection_dim=projection_dim, normalize=normalize,
                dtype=dtype or jnp.float32, remat=remat, attention=attention,
                rngs=nnx.Rngs(seed))
  load_bert_params(enc.bert, tensors, prefix, str(d))
  proj = prefix.removesuffix("bert_model.") + "encode_proj."
  if enc.projection is not None and proj + "weight" in tensors:
    w, b = tensors[proj + "weight"].T, tensors[proj + "bias"]
    if w.shape != enc.projection.kernel.get_value().shape:
      raise CheckpointError(f"{d}: tensor {proj}weight has shape {w.T.shape}, expected "
                            f"{enc.projection.kernel.get_value().shape[::-1]}")
    enc.projection.kernel.set_value(jnp.asarray(w))
    enc.projection.bias.set_value(jnp.asarray(b))
  return enc
