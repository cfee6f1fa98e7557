"""Passage-encoding throughput: our JAX encoder vs transformers' PyTorch BertModel, side by side.

  python bench/encode_throughput.py [--model minilm] [--passages 512] [--batch_size 32]
      [--max_length 160] [--repeats 3]

Both encode the same SQuAD paragraphs, in the same length-sorted batches padded to the same
shapes (multiples of 32), fp32, no gradients; runs alternate (ours, theirs, ours, ...) after a
warm-up that compiles every shape, and the median of `--repeats` timings is reported. One JSON
line per measurement, then the ratio ours/theirs.
"""
import argparse
import json
import platform
import statistics
import time

import numpy as np

from dpr_jax import cpu_malloc


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--model", default="minilm")
  ap.add_argument("--passages", type=int, default=512)
  ap.add_argument("--batch_size", type=int, default=32)
  ap.add_argument("--max_length", type=int, default=160)
  ap.add_argument("--repeats", type=int, default=3)
  a = ap.parse_args()

  import jax
  import torch
  import transformers
  from flax import nnx
  from dpr_jax.data import resources
  from dpr_jax.training import steps
  from dpr_jax.data.corpus import read_corpus
  from dpr_jax.models.hf import load_hf_encoder, resolve_model_dir
  from dpr_jax.models.bert import DualEncoder
  from dpr_jax.models.tokenization import Tokenizer

  path = resources.minilm_path() if a.model == "minilm" else resolve_model_dir(a.model)
  corpus = read_corpus(resources.squad_dir() / "paragraphs.tsv.gz", limit=a.passages)
  tok = Tokenizer(path, passage_max_length=a.max_length)
  t = tok.passages(corpus.titles, corpus.texts, pad_to_max=False, pad_multiple=1)
  lengths = t["attention_mask"].sum(1)
  order = np.argsort(-lengths, kind="stable")
  batches = []
  for s in range(0, len(order), a.batch_size):
    sel = order[s:s + a.batch_size]
    L = int(-(-lengths[sel].max() // 32) * 32)
    ids = np.zeros((len(sel), L), np.int32)
    mask = np.zeros((len(sel), L), np.int32)
    w = min(L, t["input_ids"].shape[1])
    ids[:, :w], mask[:, :w] = t["input_ids"][sel, :w], t["attention_mask"][sel, :w]
    batches.append((ids, mask))

  graphdef, state = nnx.split(DualEncoder(load_hf_encoder(path, pooling="cls")))
  params = nnx.to_pure_dict(state)
  enc = steps.make_encode(graphdef, "passage")
  ours = lambda: [np.asarray(enc(params, ids, mask)) for ids, mask in batches]
  tm = transformers.BertModel.from_pretrained(str(path), add_pooling_layer=False).eval()
  tb = [(torch.tensor(i, dtype=torch.long), torch.tensor(m, dtype=torch.long)) for i, m in batches]

  def theirs():
    with torch.inference_mode():
      return [tm(input_ids=i, attention_mask=m).last_hidden_state[:, 0].numpy() for i, m in tb]

  o, r = ours(), theirs()  # warm-up: compiles every shape
  err = max(float(np.abs(x - y).max()) for x, y in zip(o, r))
  times = {"ours": [], "theirs": []}
  for _ in range(a.repeats):
    for name, fn in (("ours", ours), ("theirs", theirs)):
      t0 = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t0)
  common = {"model": str(a.model), "passages": a.passages, "batch_size": a.batch_size,
            "max_length": a.max_length, "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, jax {jax.__version__} {jax.default_backend()}",
            "max_abs_err_cls": err, "malloc": cpu_malloc.setting()}
  res = {}
  for name in times:
    res[name] = a.passages / statistics.median(times[name])
    print(json.dumps({"bench": "encode", "impl": "dpr_jax" if name == "ours" else "torch",
                      "passages_per_s": round(res[name], 2), **common}))
  print(json.dumps({"bench": "encode", "ratio_ours_over_torch": round(res["ours"] / res["theirs"], 3),
                    **common}))


if __name__ == "__main__":
  cpu_malloc.ensure()  # DPR_JAX_MALLOC=1: ours and PyTorch alike run with its SETTINGS
  main()
