"""dpr-jax: Dense Passage Retrieval (Karpukhin et al., 2020) in JAX / Flax NNX.

The package's top level is light: `import dpr_jax` (and every command's `--help`) loads neither
JAX nor Flax. The model classes below are imported on first use (`dpr_jax.Bert`, ...).
"""
import importlib

__version__ = "0.1.0"
_LAZY = {"Bert": "dpr_jax.models.bert", "BertConfig": "dpr_jax.models.bert",
         "DualEncoder": "dpr_jax.models.bert", "Encoder": "dpr_jax.models.bert",
         "pool": "dpr_jax.models.bert", "CheckpointError": "dpr_jax.models.hf",
         "load_hf_encoder": "dpr_jax.models.hf", "Tokenizer": "dpr_jax.models.tokenization"}
__all__ = list(_LAZY)


def __getattr__(name):
  if name in _LAZY:
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
  raise AttributeError(f"module 'dpr_jax' has no attribute {name!r}")


def __dir__():
  return sorted([*globals(), *_LAZY])
