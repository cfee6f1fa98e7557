"""Dual-encoder training-step and encoding throughput: ours (JAX) vs transformers' PyTorch BERT.

  python bench/train_throughput.py --mode train --arch bert-base --batch 128 --dtype bfloat16
  python bench/train_throughput.py --mode encode --arch minilm --batch 32 --p_len 160

Same shapes, dtype, loss and optimizer on both sides: random weights of the named architecture,
random token ids, every token real (no padding, so the FLOP count is exact). `train`: B questions
(q_len tokens) with 1+H passages each (p_len tokens), in-batch NLL over all B*(1+H) passages,
clip 2.0 + AdamW, DPR's dropout 0.1 (`--attn_dropout 0` lets our attention use the platform's
fused kernel). PyTorch: `BertModel` (SDPA attention), `torch.autocast` for bf16 (fp32 master
weights, as ours). `encode`: passages only, no dropout, no gradients. The implementations
alternate (ours, theirs, ours, ...) after warm-up; medians per step are reported, one JSON line
each, then the ratio ours/theirs and, on a GPU, model FLOPs utilisation against the stated peak.
"""
import argparse
import json
import platform
import statistics
import time

import numpy as np

from dpr_jax import cpu_malloc

ARCHS = {  # BertConfig overrides
    "bert-base": {},
    "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                   intermediate_size=1536),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=128),
}
PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}  # dense bf16, vendor datasheets


def encoder_flops(cfg, tokens_per_seq: int, n_seqs: int) -> float:
  """Forward FLOPs of the BERT encoder layers (matmuls + attention scores/values), embeddings
  and LayerNorms excluded: 2 * (12 H^2) per token per layer + 4 * L * H per token per layer."""
  h, layers = cfg.hidden_size, cfg.num_hidden_layers
  per_token = layers * (2 * (4 * h * h + 2 * h * cfg.intermediate_size) + 4 * tokens_per_seq * h)
  return float(per_token) * tokens_per_seq * n_seqs


def make_ours(a, cfg):
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx
  from dpr_jax.training import sharding, steps
  from dpr_jax.models.bert import DualEncoder, Encoder

  dtype = jnp.bfloat16 if a.dtype == "bfloat16" else jnp.float32
  enc = lambda seed: Encoder(cfg, dtype=dtype, remat=a.remat, rngs=nnx.Rngs(seed))
  graphdef, state = nnx.split(DualEncoder(enc(0), enc(1)))
  mesh = sharding.make_mesh()
  params = jax.device_put(nnx.to_pure_dict(state), sharding.replicated(mesh))
  rng = np.random.default_rng(0)
  ids = lambda n, l: rng.integers(1000, cfg.vocab_size, (n, l)).astype(np.int32)
  n_p = a.batch * (1 + a.hard_negatives)
  if a.mode == "encode":
    f = steps.make_encode(graphdef, "passage")
    x = jax.device_put(ids(a.batch, a.p_len), sharding.batch_sharding(mesh))
    m = jnp.ones_like(x)
    return lambda: f(params, x, m).block_until_ready()
  batch = sharding.host_to_global({"q_ids": ids(a.batch, a.q_len),
                                   "q_mask": np.ones((a.batch, a.q_len), np.int32),
                                   "p_ids": ids(n_p, a.p_len),
                                   "p_mask": np.ones((n_p, a.p_len), np.int32)}, mesh)
  schedule = optax.constant_schedule(1e-5)
  tx = steps.make_optimizer(schedule, weight_decay=0.0, clip_norm=2.0)
  step = steps.make_train_step(graphdef, tx, schedule, mesh, similarity="dot", temperature=1.0,
                               grad_cache_chunk=a.grad_cache_chunk)
  box = [jax.jit(lambda p: steps.init_state(p, tx, 0))(params)]

  def run():
    box[0], metrics = step(box[0], batch)
    metrics["train/loss"].block_until_ready()
  return run


def make_theirs(a, cfg):
  import torch
  import transformers

  dev = "cuda" if torch.cuda.is_available() else "cpu"
  hf = transformers.BertConfig(**{**cfg.to_hf(), "attn_implementation": "sdpa"})
  models = [transformers.BertModel(hf, add_pooling_layer=False).to(dev) for _ in range(2)]
  g = torch.Generator().manual_seed(0)
  ids = lambda n, l: torch.randint(1000, cfg.vocab_size, (n, l), generator=g).to(dev)
  amp = (lambda: torch.autocast(dev, dtype=torch.bfloat16)) if a.dtype == "bfloat16" else (
      lambda: torch.autocast(dev, enabled=False))
  sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
  n_p = a.batch * (1 + a.hard_negatives)
  if a.mode == "encode":
    m = models[1].eval()
    x = ids(a.batch, a.p_len)
    mask = torch.ones_like(x)

    def run_encode():
      with torch.inference_mode(), amp():
        m(input_ids=x, attention_mask=mask).last_hidden_state[:, 0].float()
      sync()
    return run_encode
  q, p = ids(a.batch, a.q_len), ids(n_p, a.p_len)
  qm, pm = torch.ones_like(q), torch.ones_like(p)
  params = [w for m in models for w in m.parameters()]
  opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0, fused=dev == "cuda")
  target = torch.arange(a.batch, device=dev) * (1 + a.hard_negatives)
  for m in models:
    m.train()

  def run_train():
    with amp():
      qe = models[0](input_ids=q, attention_mask=qm).last_hidden_state[:, 0]
      pe = models[1](input_ids=p, attention_mask=pm).last_hidden_state[:, 0]
      loss = torch.nn.functional.cross_entropy((qe.float() @ pe.float().T), target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 2.0)
    opt.step()
    loss.item()
  return run_train


def add_step_args(ap: argparse.ArgumentParser) -> None:
  """The model and batch shape of the measured step (shared with bench/xla_profile.py)."""
  ap.add_argument("--mode", choices=["train", "encode"], default="train")
  ap.add_argument("--arch", choices=sorted(ARCHS), default="bert-base")
  ap.add_argument("--batch", type=int, default=128, help="questions (train) or passages (encode)")
  ap.add_argument("--hard_negatives", type=int, default=1)
  ap.add_argument("--q_len", type=int, default=32)
  ap.add_argument("--p_len", type=int, default=256)
  ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
  ap.add_argument("--attn_dropout", type=float, default=0.1)
  ap.add_argument("--hidden_dropout", type=float, default=0.1)
  ap.add_argument("--remat", action="store_true")
  ap.add_argument("--grad_cache_chunk", type=int, default=0)


def bert_config(a):
  from dpr_jax.models.bert import BertConfig
  return BertConfig(**ARCHS[a.arch], attention_probs_dropout_prob=a.attn_dropout,
                    hidden_dropout_prob=a.hidden_dropout)


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  add_step_args(ap)
  ap.add_argument("--impls", default="ours,torch")
  ap.add_argument("--warmup", type=int, default=2)
  ap.add_argument("--steps", type=int, default=5, help="timed steps per round")
  ap.add_argument("--rounds", type=int, default=3, help="alternating rounds")
  ap.add_argument("--tag", default="")
  a = ap.parse_args()

  import jax
  cfg = bert_config(a)
  makers = {"ours": make_ours, "torch": make_theirs}
  impls = [s for s in a.impls.split(",") if s]
  runs = {}
  for name in impls:
    t0 = time.perf_counter()
    runs[name] = makers[name](a, cfg)
    for _ in range(a.warmup):
      runs[name]()
    print(json.dumps({"impl": name, "setup_and_warmup_s": round(time.perf_counter() - t0, 1)}),
          flush=True)
  times = {name: [] for name in impls}
  for _ in range(a.rounds):
    for name in impls:
      for _ in range(a.steps):
        t0 = time.perf_counter()
        runs[name]()
        times[name].append(time.perf_counter() - t0)

  if a.mode == "train":
    n_p = a.batch * (1 + a.hard_negatives)
    flops = 3 * (encoder_flops(cfg, a.q_len, a.batch) + encoder_flops(cfg, a.p_len, n_p))
    if a.grad_cache_chunk:
      flops *= 4 / 3  # the extra forward pass of gradient caching is not model FLOPs, but runs
    unit, count = "examples_per_s", a.batch
  else:
    flops = encoder_flops(cfg, a.p_len, a.batch)
    unit, count = "passages_per_s", a.batch
  dev = jax.devices()[0]
  kind = getattr(dev, "device_kind", "cpu")
  peak = next((v for k, v in PEAK_TFLOPS.items() if k in kind), None)
  common = {"bench": a.mode, "arch": a.arch, "batch": a.batch, "q_len": a.q_len,
            "p_len": a.p_len, "hard_negatives": a.hard_negatives, "dtype": a.dtype,
            "attn_dropout": a.attn_dropout, "hidden_dropout": a.hidden_dropout, "remat": a.remat,
            "grad_cache_chunk": a.grad_cache_chunk, "device": kind,
            "machine": platform.machine(), "jax": jax.__version__, "tag": a.tag,
            "malloc": cpu_malloc.setting()}
  rate = {}
  for name in impls:
    med = statistics.median(times[name])
    rate[name] = count / med
    row = {"impl": name, "median_step_s": round(med, 5), unit: round(rate[name], 2),
           "model_tflops_per_s": round(flops / med / 1e12, 2), **common}
    if peak:
      row["mfu"] = round(flops / med / 1e12 / peak, 4)
      row["peak_tflops"] = peak
    print(json.dumps(row), flush=True)
  if len(impls) == 2:
    print(json.dumps({"ratio_ours_over_torch": round(rate["ours"] / rate["torch"], 3), **common}),
          flush=True)


if __name__ == "__main__":
  cpu_malloc.ensure()  # DPR_JAX_MALLOC=1: ours and PyTorch alike run with its SETTINGS
  main()
