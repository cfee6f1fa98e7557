"""Dual-encoder training-step and encoding throughput: ours (JAX) vs transformers' PyTorch BERT.

  python bench/train_throughput.py --mode train --arch bert-base --batch 128 --dtype bfloat16
  python bench/train_throughput.py --mode encode --arch minilm --batch 32 --p_len 160
  python bench/train_throughput.py --arch minilm --batch 16 --q_len 256 --p_len 256 \
      --lengths w100 --lengths_file bench/squad_token_lengths.json

Same shapes, dtype, loss and optimizer on both sides: random weights of the named architecture,
random token ids, every token real (no padding, so the FLOP count is exact). `train`: B questions
(q_len tokens) with 1+H passages each (p_len tokens), in-batch NLL over all B*(1+H) passages,
clip 2.0 + AdamW, DPR's dropout 0.1 (`--attn_dropout 0` lets our attention use the platform's
fused kernel). PyTorch: `BertModel` (SDPA attention), `torch.autocast` for bf16 (fp32 master
weights, as ours). `encode`: passages only, no dropout, no gradients. The implementations
alternate (ours, theirs, ours, ...) after warm-up; medians per step are reported, one JSON line
each, then the ratio ours/theirs and, on a GPU, model FLOPs utilisation against the stated peak.

`--lengths squad|w100` (training): `--n_batches` batches of real token lengths
(bench/real_lengths.py), and three columns: `ours` on batches padded to length buckets
(`--bucket_multiple`, as the training data path pads), `torch` on the same batches, and
`torch_padded` on them padded to q_len / p_len (DPR's code). A timed run is all the batches;
model FLOPs count real tokens only.
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


def make_ours(a, cfg, batches):
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
  if a.mode == "encode":
    f = steps.make_encode(graphdef, "passage")
    xs = [sharding.host_to_global({"ids": b["p_ids"], "mask": b["p_mask"]}, mesh) for b in batches]
    return lambda: [f(params, x["ids"], x["mask"]).block_until_ready() for x in xs]
  placed = [sharding.host_to_global(b, mesh) for b in batches]
  schedule = optax.constant_schedule(1e-5)
  tx = steps.make_optimizer(schedule, weight_decay=0.0, clip_norm=2.0)
  step = steps.make_train_step(graphdef, tx, schedule, mesh, similarity="dot", temperature=1.0,
                               grad_cache_chunk=a.grad_cache_chunk)
  box = [jax.jit(lambda p: steps.init_state(p, tx, 0))(params)]

  def run():
    for batch in placed:
      box[0], metrics = step(box[0], batch)
    metrics["train/loss"].block_until_ready()
  return run


def make_theirs(a, cfg, batches):
  import torch
  import transformers

  dev = "cuda" if torch.cuda.is_available() else "cpu"
  hf = transformers.BertConfig(**{**cfg.to_hf(), "attn_implementation": "sdpa"})
  models = [transformers.BertModel(hf, add_pooling_layer=False).to(dev) for _ in range(2)]
  amp = (lambda: torch.autocast(dev, dtype=torch.bfloat16)) if a.dtype == "bfloat16" else (
      lambda: torch.autocast(dev, enabled=False))
  sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
  tb = [{k: torch.tensor(v, dtype=torch.long, device=dev) for k, v in b.items()} for b in batches]
  if a.mode == "encode":
    m = models[1].eval()

    def run_encode():
      with torch.inference_mode(), amp():
        for b in tb:
          m(input_ids=b["p_ids"], attention_mask=b["p_mask"]).last_hidden_state[:, 0].float()
      sync()
    return run_encode
  params = [w for m in models for w in m.parameters()]
  opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0, fused=dev == "cuda")
  target = torch.arange(a.batch, device=dev) * (1 + a.hard_negatives)
  for m in models:
    m.train()

  def run_train():
    for b in tb:
      with amp():
        qe = models[0](input_ids=b["q_ids"], attention_mask=b["q_mask"]).last_hidden_state[:, 0]
        pe = models[1](input_ids=b["p_ids"], attention_mask=b["p_mask"]).last_hidden_state[:, 0]
        loss = torch.nn.functional.cross_entropy((qe.float() @ pe.float().T), target)
      opt.zero_grad(set_to_none=True)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(params, 2.0)
      opt.step()
    loss.item()
  return run_train


def make_batches(a, cfg):
  """-> ({impl: list of numpy batches}, info). `--lengths full`: one batch, every token real
  (q_len / p_len). `squad` / `w100`: `--n_batches` batches of real token lengths
  (bench/real_lengths.py), bucketed for ours and `torch`, padded to the maximum for
  `torch_padded` (PyTorch DPR's shapes)."""
  n_p = a.batch * (1 + a.hard_negatives)
  if a.lengths == "full":
    rng = np.random.default_rng(0)
    ids = lambda n, l: rng.integers(1000, cfg.vocab_size, (n, l)).astype(np.int32)
    b = {"q_ids": ids(a.batch, a.q_len), "q_mask": np.ones((a.batch, a.q_len), np.int32),
         "p_ids": ids(n_p, a.p_len), "p_mask": np.ones((n_p, a.p_len), np.int32)}
    if a.mode == "encode":
      b = {"p_ids": b["p_ids"][:a.batch], "p_mask": b["p_mask"][:a.batch]}
    lengths = {"q": [a.q_len] * a.batch, "p": [a.p_len] * n_p}
    return {"ours": [b], "torch": [b]}, {"lengths": lengths}
  if a.mode == "encode":
    raise SystemExit("real lengths for encoding: bench/encode_throughput.py")
  import real_lengths as rl  # this directory
  if a.lengths_file:
    ql, pl = rl.load_lengths(a.lengths_file, a.lengths, n_p * a.n_batches, a.q_len, a.p_len)
  else:
    from dpr_jax.data import resources
    from dpr_jax.models.tokenization import Tokenizer
    tok = Tokenizer(resources.minilm_path())
    ql, pl = rl.sample_lengths(tok, a.lengths, n_p * a.n_batches, a.q_len, a.p_len)
  bucketed = rl.train_batches(ql, pl, batch=a.batch, per_question=1 + a.hard_negatives,
                              n_batches=a.n_batches, q_len=a.q_len, p_len=a.p_len,
                              multiple=a.bucket_multiple, vocab=cfg.vocab_size)
  padded = [rl.padded_to(b, a.q_len, a.p_len) for b in bucketed]
  info = {"lengths": {"q": [int(x) for b in bucketed for x in b["q_mask"].sum(1)],
                      "p": [int(x) for b in bucketed for x in b["p_mask"].sum(1)]},
          "bucketed": rl.padding_stats(bucketed), "padded": rl.padding_stats(padded)}
  return {"ours": bucketed, "torch": bucketed, "torch_padded": padded}, info


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
  ap.add_argument("--lengths", choices=["full", "squad", "w100"], default="full",
                  help="full: every token real; squad / w100: real token lengths (train mode)")
  ap.add_argument("--n_batches", type=int, default=3, help="batches per timed run (real lengths)")
  ap.add_argument("--bucket_multiple", type=int, default=32)
  ap.add_argument("--lengths_file", default="",
                  help="lengths from bench/real_lengths.py --out (no data or tokenizer needed)")


def bert_config(a):
  from dpr_jax.models.bert import BertConfig
  return BertConfig(**ARCHS[a.arch], attention_probs_dropout_prob=a.attn_dropout,
                    hidden_dropout_prob=a.hidden_dropout)


def model_flops(a, cfg, lengths) -> float:
  """Model FLOPs of one timed run on the real tokens: forward x3 for a training step."""
  f = lambda side: sum(encoder_flops(cfg, int(l), 1) for l in lengths[side])
  if a.mode == "encode":
    return f("p")
  flops = 3 * (f("q") + f("p"))
  if a.grad_cache_chunk:
    flops *= 4 / 3  # the extra forward pass of gradient caching is not model FLOPs, but runs
  return flops


def time_runs(a, runs) -> dict:
  """Warm-up (compiles every shape), then alternating rounds: {impl: [seconds per run]}."""
  for name, run in runs.items():
    t0 = time.perf_counter()
    for _ in range(a.warmup):
      run()
    print(json.dumps({"impl": name, "warmup_s": round(time.perf_counter() - t0, 1)}), flush=True)
  times = {name: [] for name in runs}
  for _ in range(a.rounds):
    for name, run in runs.items():
      for _ in range(a.steps):
        t0 = time.perf_counter()
        run()
        times[name].append(time.perf_counter() - t0)
  return times


def add_timing_args(ap: argparse.ArgumentParser, impls: str, warmup: int, steps: int) -> None:
  """The flags of `time_runs` (and the implementations it times), shared by the benchmarks."""
  ap.add_argument("--impls", default=impls, help="comma-separated implementations")
  ap.add_argument("--warmup", type=int, default=warmup)
  ap.add_argument("--steps", type=int, default=steps, help="timed runs per round")
  ap.add_argument("--rounds", type=int, default=3, help="alternating rounds")
  ap.add_argument("--tag", default="")


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  add_step_args(ap)
  add_timing_args(ap, "", warmup=2, steps=5)  # "": ours,torch (full lengths);
  a = ap.parse_args()                         # ours,torch_padded,torch (real lengths)

  import jax
  cfg = bert_config(a)
  batches, info = make_batches(a, cfg)
  impls = [s for s in (a.impls or ",".join(batches)).split(",") if s]
  makers = {"ours": make_ours, "torch": make_theirs, "torch_padded": make_theirs}
  runs = {name: makers[name](a, cfg, batches[name]) for name in impls}
  times = time_runs(a, runs)

  flops = model_flops(a, cfg, info["lengths"])
  unit = "examples_per_s" if a.mode == "train" else "passages_per_s"
  count = a.batch * len(batches["ours"])
  dev = jax.devices()[0]
  kind = getattr(dev, "device_kind", "cpu")
  peak = next((v for k, v in PEAK_TFLOPS.items() if k in kind), None)
  common = {"bench": a.mode, "arch": a.arch, "batch": a.batch, "q_len": a.q_len,
            "p_len": a.p_len, "hard_negatives": a.hard_negatives, "dtype": a.dtype,
            "attn_dropout": a.attn_dropout, "hidden_dropout": a.hidden_dropout, "remat": a.remat,
            "grad_cache_chunk": a.grad_cache_chunk, "lengths": a.lengths,
            "batches_per_run": len(batches["ours"]), "device": kind,
            "machine": platform.machine(), "jax": jax.__version__, "tag": a.tag,
            "malloc": cpu_malloc.setting()}
  if a.lengths != "full":
    common.update(bucket_multiple=a.bucket_multiple, bucketed=info["bucketed"],
                  padded=info["padded"])
  rate = {}
  for name in impls:
    med = statistics.median(times[name])
    rate[name] = count / med
    row = {"impl": name, "median_run_s": round(med, 5), unit: round(rate[name], 2),
           "model_tflops_per_s": round(flops / med / 1e12, 3), **common}
    if peak:
      row["mfu"] = round(flops / med / 1e12 / peak, 4)
      row["peak_tflops"] = peak
    print(json.dumps(row), flush=True)
  if "ours" in rate:
    ratios = {f"ratio_ours_over_{n}": round(rate["ours"] / rate[n], 3) for n in rate if n != "ours"}
    print(json.dumps({**ratios, **common}), flush=True)


if __name__ == "__main__":
  cpu_malloc.ensure()  # DPR_JAX_MALLOC=1: ours and PyTorch alike run with its SETTINGS
  main()
