"""Passage-encoding throughput on real lengths: our JAX encoder vs transformers' PyTorch BertModel.

  python bench/encode_throughput.py [--model minilm] [--source squad|w100] [--passages 1024]
      [--batch_size 32] [--max_length 256] [--bucket_multiple 32] [--repeats 3]

Three columns on the same passages (SQuAD paragraphs, or DPR-style 100-word windows of them,
bench/real_lengths.py), fp32, no gradients:
  ours          length-sorted batches padded to buckets (dpr_jax.data.buckets, as
                dpr_jax.retrieval.encoding does);
  torch         the same batches;
  torch_padded  the same batches padded to --max_length (DPR's generate_dense_embeddings).
Runs alternate after a warm-up that compiles every shape; the median of `--repeats` timings is
reported. One JSON line per column, then the ratios ours/others.
"""
import argparse
import json
import platform
import statistics
import time

import numpy as np

from dpr_jax import cpu_malloc


def passages(source: str, n: int, seed: int = 0):
  from dpr_jax.data import resources
  from dpr_jax.data.corpus import read_corpus
  import real_lengths as rl  # this directory
  c = read_corpus(resources.squad_dir() / "paragraphs.tsv.gz")
  texts, titles = (c.texts, c.titles) if source == "squad" else rl.w100_windows(c.texts, c.titles)
  sel = np.random.default_rng(seed).choice(len(texts), min(n, len(texts)), replace=False)
  return [titles[i] for i in sel], [texts[i] for i in sel]


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--model", default="minilm")
  ap.add_argument("--source", choices=["squad", "w100"], default="squad")
  ap.add_argument("--passages", type=int, default=1024)
  ap.add_argument("--batch_size", type=int, default=32)
  ap.add_argument("--max_length", type=int, default=256)
  ap.add_argument("--bucket_multiple", type=int, default=32)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--impls", default="ours,torch,torch_padded")
  a = ap.parse_args()

  import jax
  import torch
  import transformers
  from flax import nnx
  from dpr_jax.data import buckets, resources
  from dpr_jax.training import steps
  from dpr_jax.models.hf import load_hf_encoder, resolve_model_dir
  from dpr_jax.models.bert import DualEncoder
  from dpr_jax.models.tokenization import Tokenizer

  path = resources.minilm_path() if a.model == "minilm" else resolve_model_dir(a.model)
  tok = Tokenizer(path, passage_max_length=a.max_length)
  titles, texts = passages(a.source, a.passages)
  t = tok.passages(titles, texts, pad_to_max=False, pad_multiple=1)
  batches = [buckets.pad_to(t["input_ids"][sel], t["attention_mask"][sel], length, tok.pad_id)
             for sel, length in buckets.length_sorted_batches(
                 t["attention_mask"].sum(1), a.batch_size, a.bucket_multiple, a.max_length)]
  padded = [buckets.pad_to(i, m, a.max_length, tok.pad_id) for i, m in batches]

  graphdef, state = nnx.split(DualEncoder(load_hf_encoder(path, pooling="cls")))
  params = nnx.to_pure_dict(state)
  enc = steps.make_encode(graphdef, "passage")
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  tm = transformers.BertModel.from_pretrained(str(path), add_pooling_layer=False).eval().to(dev)
  as_torch = lambda bs: [(torch.tensor(i, dtype=torch.long, device=dev),
                          torch.tensor(m, dtype=torch.long, device=dev)) for i, m in bs]

  def torch_run(tb):
    def run():
      with torch.inference_mode():
        return [tm(input_ids=i, attention_mask=m).last_hidden_state[:, 0].cpu().numpy()
                for i, m in tb]
    return run
  runs = {"ours": lambda: [np.asarray(enc(params, i, m)) for i, m in batches],
          "torch": torch_run(as_torch(batches)), "torch_padded": torch_run(as_torch(padded))}
  runs = {k: runs[k] for k in a.impls.split(",")}
  out = {name: run() for name, run in runs.items()}  # warm-up: compiles every shape
  err = max(float(np.abs(x - y).max()) for name in out if name != "ours"
            for x, y in zip(out["ours"], out[name])) if len(out) > 1 else None
  times = {name: [] for name in runs}
  for _ in range(a.repeats):
    for name, fn in runs.items():
      t0 = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t0)
  real = int(t["attention_mask"].sum())
  common = {"bench": "encode", "model": str(a.model), "source": a.source, "passages": len(texts),
            "batch_size": a.batch_size, "max_length": a.max_length,
            "bucket_multiple": a.bucket_multiple,
            "widths": sorted({i.shape[1] for i, _ in batches}),
            "padding_bucketed": round(1 - real / sum(i.size for i, _ in batches), 4),
            "padding_padded": round(1 - real / sum(i.size for i, _ in padded), 4),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                       f"jax {jax.__version__} {jax.default_backend()}",
            "max_abs_err_cls": err, "malloc": cpu_malloc.setting()}
  res = {}
  for name in times:
    res[name] = len(texts) / statistics.median(times[name])
    print(json.dumps({"impl": name, "passages_per_s": round(res[name], 2), **common}), flush=True)
  if "ours" in res:
    print(json.dumps({**{f"ratio_ours_over_{n}": round(res["ours"] / res[n], 3)
                         for n in res if n != "ours"}, **common}), flush=True)


if __name__ == "__main__":
  cpu_malloc.ensure()  # DPR_JAX_MALLOC=1: ours and PyTorch alike run with its SETTINGS
  main()
