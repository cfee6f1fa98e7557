"""dpr-jax: Dense Passage Retrieval (Karpukhin et al., 2020) in JAX / Flax NNX."""
from dpr_jax.models.bert import Bert, BertConfig, DualEncoder, Encoder, pool
from dpr_jax.models.hf import CheckpointError, load_hf_encoder
from dpr_jax.models.tokenization import Tokenizer

__version__ = "0.1.0"
__all__ = ["Bert", "BertConfig", "DualEncoder", "Encoder", "pool", "CheckpointError",
           "load_hf_encoder", "Tokenizer"]
