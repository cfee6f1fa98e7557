"""Reading a sentence-transformers model folder into our `Encoder` / `DualEncoder`.

A folder that `sentence_transformers.SentenceTransformer(path)` loads has a `modules.json`
listing its modules in order. We read the ones our `Encoder` computes exactly:
`Transformer` (a BERT: config.json + weights + tokenizer files, at the module's path),
`Pooling` (`1_Pooling/config.json`: mean or cls), one `Dense` with identity activation (our
projection) and `Normalize` (unit-length output). Anything else is refused with the file and
what was found. `dpr_jax.tools.st_export` writes such folders; an untied dual encoder is two of
them, `question/` and `passage/`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dpr_jax.models.hf import CheckpointError

_KNOWN = ("Transformer", "Pooling", "Dense", "Normalize")
IDENTITY = ("torch.nn.modules.linear.Identity", "torch.nn.Identity")
_LEGACY_POOLING = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
                   "pooling_mode_max_tokens": "max",
                   "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                   "pooling_mode_weightedmean_tokens": "weightedmean",
                   "pooling_mode_lasttoken": "lasttoken"}


def is_st_folder(path) -> bool:
  return (Path(path) / "modules.json").is_file()


def _json(f: Path):
  try:
    return json.loads(f.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise CheckpointError(f"{f}: expected a JSON file ({type(e).__name__}: {e})") from e


def pooling_mode(config_file: Path) -> str:
  """`1_Pooling/config.json` -> 'mean' or 'cls'. Reads both the `pooling_mode` key of recent
  sentence-transformers releases and the older `pooling_mode_*_token(s)` booleans."""
  c = _json(config_file)
  if "pooling_mode" in c:
    modes = [c["pooling_mode"]] if isinstance(c["pooling_mode"], str) else list(c["pooling_mode"])
  else:
    modes = [mode for key, mode in _LEGACY_POOLING.items() if c.get(key)]
  if modes not in (["mean"], ["cls"]):
    raise CheckpointError(f"{config_file}: pooling {modes or 'none'}; only a single 'mean' or "
                          "'cls' pooling is implemented")
  return modes[0]


def _dense(d: Path) -> tuple[np.ndarray, np.ndarray]:
  """A Dense module folder -> (kernel [in, out], bias [out])."""
  c = _json(d / "config.json")
  act = c.get("activation_function", "torch.nn.modules.activation.Tanh")
  if act not in IDENTITY or c.get("use_residual"):
    raise CheckpointError(f"{d / 'config.json'}: activation_function {act!r}"
                          f"{' with use_residual' if c.get('use_residual') else ''}; only a "
                          f"linear Dense ({IDENTITY[0]}) is implemented")
  from dpr_jax.models.hf import read_tensors
  t = read_tensors(d)
  if "linear.weight" not in t:
    raise CheckpointError(f"{d}: no tensor 'linear.weight' (found {sorted(t)})")
  w = np.asarray(t["linear.weight"], np.float32)
  want = (int(c["out_features"]), int(c["in_features"]))
  if w.shape != want:
    raise CheckpointError(f"{d}: linear.weight has shape {w.shape}, config.json says {want}")
  b = np.asarray(t.get("linear.bias", np.zeros(want[0])), np.float32)
  return w.T, b


def read_layout(path) -> dict:
  """modules.json -> {transformer: Path, pooling, dense: (kernel, bias) | None, normalize,
  max_seq_length}, in the order the modules run (Transformer, Pooling, [Dense], [Normalize])."""
  root = Path(path)
  modules = _json(root / "modules.json")
  kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
  order = [k for k in kinds if k != "Normalize"] + [k for k in kinds if k == "Normalize"]
  if (any(k not in _KNOWN for k in kinds) or kinds[:2] != ["Transformer", "Pooling"]
      or kinds.count("Dense") > 1 or kinds.count("Normalize") > 1 or kinds != order):
    raise CheckpointError(f"{root / 'modules.json'}: modules {kinds}; expected Transformer, "
                          "Pooling, optionally one Dense, optionally Normalize (in that order)")
  at = {k: root / m.get("path", "") for k, m in zip(kinds, modules)}
  pool_cfg = at["Pooling"] / "config.json"
  if not pool_cfg.is_file():
    raise CheckpointError(f"{pool_cfg} not found (the Pooling module of {root / 'modules.json'})")
  st_cfg = at["Transformer"] / "sentence_bert_config.json"
  max_len = _json(st_cfg).get("max_seq_length") if st_cfg.is_file() else None
  return {"transformer": at["Transformer"], "pooling": pooling_mode(pool_cfg),
          "dense": _dense(at["Dense"]) if "Dense" in at else None,
          "normalize": "Normalize" in at, "max_seq_length": max_len}


def load_st_encoder(path, *, normalize: bool | None = None, dtype=None, remat: bool = False,
                    seed: int = 0):
  """One sentence-transformers folder -> (`Encoder`, layout). `normalize=None` follows the
  folder's Normalize module."""
  import jax.numpy as jnp
  from dpr_jax.models.hf import load_hf_encoder
  lay = read_layout(path)
  dense = lay["dense"]
  enc = load_hf_encoder(lay["transformer"], pooling=lay["pooling"],
                        projection_dim=0 if dense is None else dense[0].shape[1],
                        normalize=lay["normalize"] if normalize is None else normalize,
                        dtype=dtype, remat=remat, seed=seed)
  if dense is not None:
    if dense[0].shape[0] != enc.bert.cfg.hidden_size:
      raise CheckpointError(f"{path}: Dense in_features {dense[0].shape[0]}, the transformer's "
                            f"hidden size is {enc.bert.cfg.hidden_size}")
    enc.projection.kernel.set_value(jnp.asarray(dense[0]))
    enc.projection.bias.set_value(jnp.asarray(dense[1]))
  return enc, lay


def st_pair(path) -> tuple[Path, Path] | None:
  """An untied export: `question/` and `passage/`, each a sentence-transformers folder."""
  p = Path(path)
  q, c = p / "question", p / "passage"
  return (q, c) if is_st_folder(q) and is_st_folder(c) else None


def load_st_model(path, *, normalize: bool | None = None, dtype=None):
  """A sentence-transformers folder (tied) or a question/ + passage/ pair of them ->
  (DualEncoder, tokenizer path, description), or None when `path` is neither."""
  from dpr_jax.models.bert import DualEncoder
  p = Path(path)
  pair = st_pair(p)
  if pair is None and not is_st_folder(p):
    return None
  q, lay = load_st_encoder(pair[0] if pair else p, normalize=normalize, dtype=dtype)
  passage = load_st_encoder(pair[1], normalize=normalize, dtype=dtype)[0] if pair else None
  model = DualEncoder(q, passage)
  return model, str(lay["transformer"]), {"model": str(p.absolute()), "pooling": q.pooling,
                                          "normalize": q.normalize}
