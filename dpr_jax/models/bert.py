"""BERT in Flax NNX, and the DPR dual encoder built on it.

The BERT here is the post-LayerNorm architecture of Devlin et al. (and of transformers'
`BertModel`): word + position + token-type embeddings, LayerNorm, N layers of masked
self-attention and an exact-GELU feed-forward block. Parameters are fp32; `dtype` sets the compute
precision. Every parameter carries `logical_axes` metadata (e.g. `("embed", "mlp")`);
`dpr_jax.training.sharding` maps those names to mesh axes, so this module never names a mesh axis.

Dropout randomness is an explicit `dropout_rng` argument rather than NNX RNG state: the model is
a pure function of (params, inputs, key), which exact resume and gradient caching rely on
(re-encoding a sub-batch with the same key reproduces the same dropout masks).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.extend import random as jax_random

POOLINGS = ("cls", "mean")
# `auto`: cuDNN flash attention on a GPU in bf16/fp16 when the head size allows it, the
# deferred-normalisation form on a CPU, XLA's attention elsewhere (a TPU: XLA fuses
# `jax.nn.dot_product_attention` for its TensorCores; `auto_attention`); `xla`: always
# `jax.nn.dot_product_attention`; `cudnn`: always cuDNN (an error where it cannot run). Under
# dropout on the probabilities every platform runs the deferred form (`SelfAttention`).
ATTENTIONS = ("auto", "xla", "cudnn")


def auto_attention(platform: str) -> str:
  """What `auto` runs on `platform` (jax's backend name) without probability dropout, beside
  cuDNN on a GPU: `deferred` (`deferred_softmax_attention`) on a CPU, else `xla`. A program
  compiled on a CPU host for a TPU (`dpr_jax.compile`) pins this choice for `tpu`."""
  return "deferred" if platform == "cpu" else "xla"


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Architecture hyper-parameters; names follow transformers' `BertConfig` where they exist."""
  vocab_size: int = 30522
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  initializer_range: float = 0.02
  hidden_act: str = "gelu"

  @classmethod
  def from_hf(cls, hf: dict[str, Any]) -> "BertConfig":
    """From a Hugging Face `config.json` dict (BERT or DPR); unknown keys are ignored."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in hf.items() if k in names})

  def to_hf(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads


def _init(std: float, axes: tuple[str | None, ...]):
  return nnx.with_metadata(nnx.initializers.normal(std), logical_axes=axes)


def _zeros(axes):
  return nnx.with_metadata(nnx.initializers.zeros_init(), logical_axes=axes)


def _ones(axes):
  return nnx.with_metadata(nnx.initializers.ones_init(), logical_axes=axes)


def dense(n_in: int, n_out: int, axes: tuple[str, str], cfg: BertConfig, dtype, rngs) -> nnx.Linear:
  return nnx.Linear(n_in, n_out, kernel_init=_init(cfg.initializer_range, axes),
                    bias_init=_zeros((axes[1],)), dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


def layer_norm(cfg: BertConfig, rngs) -> nnx.LayerNorm:
  # LayerNorm statistics and output in fp32 even under bf16 compute: BERT's residual stream
  # is sensitive to it, and it is cheap.
  return nnx.LayerNorm(cfg.hidden_size, epsilon=cfg.layer_norm_eps, dtype=jnp.float32,
                       param_dtype=jnp.float32, scale_init=_ones(("embed",)),
                       bias_init=_zeros(("embed",)), rngs=rngs)


def split_keys(rng: jax.Array, n: int) -> list[jax.Array]:
  """`n` independent keys from one key, or from each key of a [B] batch of per-example keys."""
  if rng.ndim == 0:
    return list(jax.random.split(rng, n))
  keys = jax.vmap(lambda k: jax.random.split(k, n))(rng)             # [B, n]
  return [keys[:, i] for i in range(n)]


def fold_in(rng: jax.Array, i: int) -> jax.Array:
  if rng.ndim == 0:
    return jax.random.fold_in(rng, i)
  return jax.vmap(lambda k: jax.random.fold_in(k, i))(rng)


def example_keys(rng: jax.Array, index: jax.Array) -> jax.Array:
  """index: [B] ints (each example's position in the global batch) -> [B] per-example keys.
  Example i's dropout masks depend on (rng, i) alone, not on which sub-batch or device encodes
  it: what makes gradient caching exact."""
  return jax.vmap(lambda i: jax.random.fold_in(rng, i))(index)


def _uint16_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Uniform uint16 values of `shape` from one key: 4 per threefry block. `jax.random.bits`
  (partitionable threefry, jax's default) spends one 20-round block per element whatever the
  width; this counter-mode use of the raw 2x32 cipher spends one per 4 elements, which made
  dropout masks ~4x cheaper to draw on XLA:CPU (measured; docs/performance.md)."""
  n = math.prod(shape)
  words = jax_random.threefry_2x32(jax.random.key_data(key),
                                   jax.lax.iota(jnp.uint32, 2 * ((n + 3) // 4)))
  return jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)[:n].reshape(shape)


def dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
  """Inverted dropout; `rng=None` (evaluation) or `rate=0` is the identity. `rng`: one key, or a
  [B] batch of keys, one per example along x's leading axis. An element is dropped when a
  uniform 16-bit draw is below round(rate * 65536) (rate 0.1: 0.100006) and the kept ones are
  scaled so the expectation is exactly x."""
  threshold = round(rate * 65536)
  if rng is None or threshold == 0:
    return x
  if threshold >= 65536:
    return jnp.zeros_like(x)
  if rng.ndim == 0:
    bits = _uint16_bits(rng, x.shape)
  else:
    bits = jax.vmap(lambda k: _uint16_bits(k, x.shape[1:]))(rng)
  scale = 65536 / (65536 - threshold)
  return jnp.where(bits >= threshold, x * jnp.asarray(scale, x.dtype), jnp.zeros_like(x))


def deferred_softmax_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array,
                               rate: float = 0.0, rng: jax.Array | None = None) -> jax.Array:
  """Softmax attention that normalises after the value product: exp(s - max) @ v / rowsum,
  instead of softmax(s) @ v. The same function (dropout included: a per-row scale commutes with
  the mask), but the division runs over [B, N, L, D] instead of [B, N, L, L]. XLA's CPU backend
  runs it ~1.6x faster than `jax.nn.dot_product_attention` at 256 tokens (measured here). The
  attention of every platform under dropout, and of the CPU without.
  q, k, v: [B, L, N, D]; mask: [B, L] -> [B, L, N, D]."""
  d = q.shape[-1]
  qt, kt, vt = (x.transpose(0, 2, 1, 3) for x in (q, k, v))          # [B, N, L, D]
  s = (qt @ kt.swapaxes(-1, -2)).astype(jnp.float32) / math.sqrt(d)
  s = jnp.where(mask[:, None, None, :] > 0, s, jnp.finfo(jnp.float32).min)
  e = jnp.exp(s - jax.lax.stop_gradient(s.max(-1, keepdims=True)))
  denom = e.sum(-1, keepdims=True)
  e = dropout(e, rate, rng)
  out = (e.astype(v.dtype) @ vt) / denom.astype(v.dtype)
  return out.transpose(0, 2, 1, 3)


def cudnn_supported(q: jax.Array) -> bool:
  """Whether cuDNN's flash attention takes these queries: a GPU, bf16/fp16, and a head size that
  is a multiple of 8 up to 128."""
  d = q.shape[-1]
  return (jax.default_backend() == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16)
          and d % 8 == 0 and d <= 128)


def fused_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array,
                    implementation: str = "auto") -> jax.Array:
  """Attention without dropout on the probabilities. q, k, v: [B, L, N, D]; mask: [B, L] with
  padding on the right (our tokenizer's layout) -> [B, L, N, D].

  `implementation` (one of `ATTENTIONS`, the model config's `attention` field): `auto` runs
  cuDNN's flash attention, given the sequence lengths (it takes no boolean mask), where
  `cudnn_supported`; on CPU the deferred-normalisation form above; elsewhere XLA's attention.
  Rows of padding positions differ between these; nothing reads them.
  """
  if implementation not in ATTENTIONS:
    raise ValueError(f"attention must be one of {ATTENTIONS}, got {implementation!r}")
  if implementation == "cudnn" or (implementation == "auto" and cudnn_supported(q)):
    lengths = mask.sum(-1).astype(jnp.int32)
    return jax.nn.dot_product_attention(q, k, v, query_seq_lengths=lengths,
                                        key_value_seq_lengths=lengths, implementation="cudnn")
  if implementation == "auto" and auto_attention(jax.default_backend()) == "deferred":
    return deferred_softmax_attention(q, k, v, mask)
  return jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, None, :].astype(bool))


class SelfAttention(nnx.Module):
  def __init__(self, cfg: BertConfig, dtype, rngs: nnx.Rngs, attention: str = "auto"):
    if attention not in ATTENTIONS:
      raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
    h = cfg.hidden_size
    self.cfg, self.dtype, self.implementation = cfg, dtype, attention
    self.query = dense(h, h, ("embed", "heads"), cfg, dtype, rngs)
    self.key = dense(h, h, ("embed", "heads"), cfg, dtype, rngs)
    self.value = dense(h, h, ("embed", "heads"), cfg, dtype, rngs)

  def __call__(self, x: jax.Array, mask: jax.Array, rng: jax.Array | None) -> jax.Array:
    """x: [B, L, H]; mask: [B, L] (1 = token, 0 = padding) -> [B, L, H]."""
    b, l, _ = x.shape
    n, d = self.cfg.num_attention_heads, self.cfg.head_dim
    q = self.query(x).reshape(b, l, n, d)
    k = self.key(x).reshape(b, l, n, d)
    v = self.value(x).reshape(b, l, n, d)
    rate = self.cfg.attention_probs_dropout_prob
    if rng is None or rate == 0.0:
      # No dropout on the probabilities: the platform's fused attention is usable.
      out = fused_attention(q, k, v, mask, self.implementation)
    else:
      # Dropout on the probabilities materialises them on every platform; normalising after
      # the value product divides [B, N, L, D] instead of [B, N, L, L].
      out = deferred_softmax_attention(q, k, v, mask, rate, rng)
    return out.reshape(b, l, n * d)


class Layer(nnx.Module):
  """One post-LN transformer block, names as in transformers' `BertLayer`."""

  def __init__(self, cfg: BertConfig, dtype, rngs: nnx.Rngs, attention: str = "auto"):
    h, f = cfg.hidden_size, cfg.intermediate_size
    self.cfg, self.dtype = cfg, dtype
    self.attention = SelfAttention(cfg, dtype, rngs, attention)
    self.attention_output = dense(h, h, ("heads", "embed"), cfg, dtype, rngs)
    self.attention_norm = layer_norm(cfg, rngs)
    self.intermediate = dense(h, f, ("embed", "mlp"), cfg, dtype, rngs)
    self.output = dense(f, h, ("mlp", "embed"), cfg, dtype, rngs)
    self.output_norm = layer_norm(cfg, rngs)

  def __call__(self, x: jax.Array, mask: jax.Array, rng: jax.Array | None) -> jax.Array:
    """x: [B, L, H] fp32 residual stream -> [B, L, H] fp32."""
    keys = [None] * 3 if rng is None else split_keys(rng, 3)
    p = self.cfg.hidden_dropout_prob
    a = self.attention(x.astype(self.dtype), mask, keys[0])
    x = self.attention_norm(x + dropout(self.attention_output(a), p, keys[1]))
    f = jax.nn.gelu(self.intermediate(x.astype(self.dtype)), approximate=False)
    return self.output_norm(x + dropout(self.output(f), p, keys[2]))


class Bert(nnx.Module):
  """BERT without the pooler. Returns the last hidden states, [B, L, H] in fp32."""

  def __init__(self, cfg: BertConfig, *, dtype=jnp.float32, remat: bool = False,
               attention: str = "auto", rngs: nnx.Rngs):
    self.cfg, self.dtype, self.remat = cfg, dtype, remat
    std, h = cfg.initializer_range, cfg.hidden_size
    embed = lambda n: nnx.Embed(n, h, embedding_init=_init(std, ("vocab", "embed")),
                                dtype=jnp.float32, param_dtype=jnp.float32, rngs=rngs)
    self.word_embeddings = embed(cfg.vocab_size)
    self.position_embeddings = embed(cfg.max_position_embeddings)
    self.token_type_embeddings = embed(cfg.type_vocab_size)
    self.embeddings_norm = layer_norm(cfg, rngs)
    self.layers = nnx.List([Layer(cfg, dtype, rngs, attention)
                            for _ in range(cfg.num_hidden_layers)])

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
               token_type_ids: jax.Array | None = None, *,
               dropout_rng: jax.Array | None = None) -> jax.Array:
    """input_ids, attention_mask, token_type_ids: [B, L] ints -> hidden states [B, L, H].
    `dropout_rng`: None (no dropout), one key, or [B] per-example keys (`example_keys`)."""
    _, l = input_ids.shape
    if l > self.cfg.max_position_embeddings:
      raise ValueError(f"sequence length {l} exceeds max_position_embeddings "
                       f"{self.cfg.max_position_embeddings}")
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    x = (self.word_embeddings(input_ids) + self.position_embeddings(jnp.arange(l))[None]
         + self.token_type_embeddings(token_type_ids))
    n = self.cfg.num_hidden_layers
    rng = lambda i: None if dropout_rng is None else fold_in(dropout_rng, i)
    x = dropout(self.embeddings_norm(x), self.cfg.hidden_dropout_prob, rng(n))
    for i, layer in enumerate(self.layers):
      if self.remat:
        # Recompute each layer's activations in the backward pass: memory grows with one
        # layer's activations instead of all of them.
        gdef, st = nnx.split(layer)
        x = jax.checkpoint(lambda s, h, m, k: nnx.merge(gdef, s)(h, m, k))(
            st, x, attention_mask, rng(i))
      else:
        x = layer(x, attention_mask, rng(i))
    return x


def pool(hidden: jax.Array, attention_mask: jax.Array, pooling: str) -> jax.Array:
  """hidden: [B, L, H], attention_mask: [B, L] -> [B, H]. `cls`: first token; `mean`: masked mean."""
  if pooling == "cls":
    return hidden[:, 0]
  if pooling == "mean":
    m = attention_mask.astype(hidden.dtype)[..., None]
    return (hidden * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
  raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


class Encoder(nnx.Module):
  """BERT + pooling (+ DPR's optional `encode_proj` projection): text -> one vector."""

  def __init__(self, cfg: BertConfig, *, pooling: str = "cls", projection_dim: int = 0,
               normalize: bool = False, dtype=jnp.float32, remat: bool = False,
               attention: str = "auto", rngs: nnx.Rngs):
    if pooling not in POOLINGS:
      raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    # `normalize`: unit-length embeddings, so that the inner product of an index is the cosine
    # similarity the model was trained with.
    self.pooling, self.projection_dim, self.normalize = pooling, projection_dim, normalize
    self.bert = Bert(cfg, dtype=dtype, remat=remat, attention=attention, rngs=rngs)
    self.projection = (dense(cfg.hidden_size, projection_dim, ("embed", "proj"), cfg,
                             jnp.float32, rngs) if projection_dim else None)

  @property
  def dim(self) -> int:
    return self.projection_dim or self.bert.cfg.hidden_size

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array, *,
               dropout_rng: jax.Array | None = None) -> jax.Array:
    """input_ids, attention_mask: [B, L] -> embeddings [B, D] in fp32."""
    h = self.bert(input_ids, attention_mask, dropout_rng=dropout_rng)
    e = pool(h, attention_mask, self.pooling).astype(jnp.float32)
    e = self.projection(e) if self.projection is not None else e
    if self.normalize:
      e = e / jnp.maximum(jnp.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
    return e


class DualEncoder(nnx.Module):
  """DPR's bi-encoder: a question encoder and a passage encoder (one shared module if tied)."""

  def __init__(self, question: Encoder, passage: Encoder | None = None):
    self.question = question
    # Tied encoders are one module referenced twice; NNX stores its parameters once.
    self.passage = question if passage is None else passage

  @property
  def tied(self) -> bool:
    return self.passage is self.question

  def encode_questions(self, input_ids, attention_mask, *, dropout_rng=None) -> jax.Array:
    """[B, Lq] -> [B, D]."""
    return self.question(input_ids, attention_mask, dropout_rng=dropout_rng)

  def encode_passages(self, input_ids, attention_mask, *, dropout_rng=None) -> jax.Array:
    """[B, Lp] -> [B, D]."""
    return self.passage(input_ids, attention_mask, dropout_rng=dropout_rng)
