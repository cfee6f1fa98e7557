"""Where a BERT layer's training time goes: forward + backward of each piece, ours vs PyTorch.

  python bench/cpu_breakdown.py --arch minilm --batch 48 --seq 128
  XLA_FLAGS=--xla_cpu_use_onednn=true python bench/cpu_breakdown.py --pieces dense_ffn,layer

Each piece is timed as one jitted `jax.vjp` (forward, then backward with a random cotangent:
gradients for inputs and weights) against the same computation in PyTorch (`backward` on
`sum(out * cotangent)`), same shapes, fp32, alternating, medians. Pieces use our model's own
functions (`model.deferred_softmax_attention`, `model.dropout`, `nnx.LayerNorm`, exact GELU)
and transformers' on the PyTorch side (`BertSelfAttention`'s SDPA, `nn.LayerNorm`, `nn.GELU`).
One JSON line per piece: milliseconds for each and the ratio ours/theirs in time (> 1: we are
slower). The `layer` piece is a whole `model.Layer` against transformers' `BertLayer`.
"""
import argparse
import json
import platform
import statistics
import time

import numpy as np

from train_throughput import ARCHS  # this directory: the same architectures

from dpr_jax import cpu_malloc


def jax_pieces(b, l, h, n, f, dropout):
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from dpr_jax.models import bert as model

  rng = np.random.default_rng(0)
  r = lambda *s: jnp.asarray(rng.standard_normal(s, dtype=np.float32) * 0.1)
  x, mask = r(b, l, h), jnp.ones((b, l), jnp.int32)
  keys = model.example_keys(jax.random.key(0), jnp.arange(b)) if dropout else None
  w = lambda i, o: (r(i, o), r(o))
  lin = lambda p, x: x @ p[0] + p[1]
  ln = nnx.LayerNorm(h, epsilon=1e-12, rngs=nnx.Rngs(0))
  ln_g, ln_p = nnx.split(ln)
  rate = 0.1 if dropout else 0.0
  cfg = model.BertConfig(hidden_size=h, num_attention_heads=n, intermediate_size=f,
                         attention_probs_dropout_prob=rate, hidden_dropout_prob=rate)
  layer_g, layer_p = nnx.split(model.Layer(cfg, jnp.float32, nnx.Rngs(0)))
  d = h // n

  def attention(q, k, v):
    if dropout:
      return model.deferred_softmax_attention(q, k, v, mask, rate, keys)
    return model.fused_attention(q, k, v, mask)

  pieces = {
      # name: (function of (params, x), params, x)
      "dense_qkv": (lambda p, x: [lin(pi, x) for pi in p], [w(h, h) for _ in range(3)], x),
      "attention": (lambda p, x: attention(*[x.reshape(b, l, n, d)] * 3), (), x),
      "dense_out": (lin, w(h, h), x),
      "layernorm": (lambda p, x: nnx.merge(ln_g, p)(x), ln_p, x),
      "dense_ffn_in": (lin, w(h, f), x),
      "gelu": (lambda p, x: jax.nn.gelu(x, approximate=False), (), r(b, l, f)),
      "dense_ffn_out": (lin, w(f, h), r(b, l, f)),
      "dropout": (lambda p, x: model.dropout(x, 0.1, keys), (), x),
      "layer": (lambda p, x: nnx.merge(layer_g, p)(x, mask, keys), layer_p, x),
  }
  out = {}
  for name, (fn, p, xin) in pieces.items():
    y = jax.eval_shape(fn, p, xin)
    ct = jax.tree.map(lambda s: r(*s.shape), y)

    @jax.jit
    def step(p, xin, ct, fn=fn):
      _, vjp = jax.vjp(fn, p, xin)
      return vjp(ct)
    out[name] = lambda step=step, p=p, xin=xin, ct=ct: jax.block_until_ready(step(p, xin, ct))
  return out


def torch_pieces(b, l, h, n, f, dropout):
  import torch
  import transformers

  g = torch.Generator().manual_seed(0)
  r = lambda *s, grad=True: (torch.randn(*s, generator=g) * 0.1).requires_grad_(grad)
  rate = 0.1 if dropout else 0.0
  hf = transformers.BertConfig(hidden_size=h, num_attention_heads=n, intermediate_size=f,
                               attention_probs_dropout_prob=rate, hidden_dropout_prob=rate,
                               attn_implementation="sdpa")
  layer = transformers.models.bert.modeling_bert.BertLayer(hf).train()
  lin = lambda i, o: torch.nn.Linear(i, o)
  qkv, out_, ffi, ffo = [lin(h, h) for _ in range(3)], lin(h, h), lin(h, f), lin(f, h)
  ln, gelu = torch.nn.LayerNorm(h, eps=1e-12), torch.nn.GELU()
  d = h // n
  drop = torch.nn.Dropout(0.1).train()

  def attention(x):
    q = x.view(b, l, n, d).transpose(1, 2)
    o = torch.nn.functional.scaled_dot_product_attention(q, q, q, dropout_p=rate)
    return o.transpose(1, 2).reshape(b, l, h)

  def layer_fn(x):
    o = layer(x, attention_mask=None)
    return o[0] if isinstance(o, tuple) else o

  pieces = {
      "dense_qkv": (lambda x: torch.cat([m(x) for m in qkv], -1), r(b, l, h)),
      "attention": (attention, r(b, l, h)),
      "dense_out": (out_, r(b, l, h)),
      "layernorm": (ln, r(b, l, h)),
      "dense_ffn_in": (ffi, r(b, l, h)),
      "gelu": (gelu, r(b, l, f)),
      "dense_ffn_out": (ffo, r(b, l, f)),
      "dropout": (drop, r(b, l, h)),
      "layer": (layer_fn, r(b, l, h)),
  }
  out = {}
  for name, (fn, x) in pieces.items():
    with torch.no_grad():
      ct = torch.randn_like(fn(x))

    def step(fn=fn, x=x, ct=ct):
      y = fn(x)
      y.backward(ct)
    out[name] = step
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--arch", choices=sorted(ARCHS), default="minilm")
  ap.add_argument("--batch", type=int, default=48)
  ap.add_argument("--seq", type=int, default=128)
  ap.add_argument("--dropout", type=int, default=1, help="1: DPR's dropout 0.1 in attention, "
                  "dropout and layer pieces; 0: none")
  ap.add_argument("--pieces", default="", help="comma-separated subset (default: all)")
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--tag", default="")
  a = ap.parse_args()
  import os
  import torch
  from dpr_jax.models.bert import BertConfig
  c = BertConfig(**ARCHS[a.arch])
  h, n, f = c.hidden_size, c.num_attention_heads, c.intermediate_size
  ours = jax_pieces(a.batch, a.seq, h, n, f, bool(a.dropout))
  theirs = torch_pieces(a.batch, a.seq, h, n, f, bool(a.dropout))
  names = [s for s in a.pieces.split(",") if s] or [
      s for s in ours if a.dropout or s != "dropout"]  # without dropout there is no such piece
  for name in names:
    times = {"ours": [], "torch": []}
    for impl in ("ours", "torch"):
      for _ in range(2):
        (ours if impl == "ours" else theirs)[name]()
    for _ in range(a.rounds):
      for impl, fn in (("ours", ours[name]), ("torch", theirs[name])):
        for _ in range(a.repeats):
          t0 = time.perf_counter()
          fn()
          times[impl].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(json.dumps({"bench": "cpu_breakdown", "piece": name, "arch": a.arch,
                      "batch": a.batch, "seq": a.seq, "dropout": a.dropout,
                      "ours_ms": round(med["ours"], 2), "torch_ms": round(med["torch"], 2),
                      "time_ratio_ours_over_torch": round(med["ours"] / med["torch"], 3),
                      "xla_flags": os.environ.get("XLA_FLAGS", ""),
                      "torch_threads": torch.get_num_threads(),
                      "machine": platform.machine(), "tag": a.tag,
                      "malloc": cpu_malloc.setting()}), flush=True)


if __name__ == "__main__":
  cpu_malloc.ensure()  # DPR_JAX_MALLOC=1: ours and PyTorch alike run with its SETTINGS
  main()
