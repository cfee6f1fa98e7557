"""Reader training-step throughput: ours (JAX) vs transformers' `DPRReader` (PyTorch), side by
side in one process on the same batches.

  python bench/reader_throughput.py --arch minilm --questions 16 --passages 2 --max_length 350

A batch is `--questions` questions x `--passages` passages (1 positive + negatives) of real
reader-input lengths: `[CLS] question [SEP] title [SEP] text [SEP]` for random SQuAD training
questions and random corpus paragraphs, counted with MiniLM's tokenizer and cut at
`--max_length`; token ids are random (the compute does not depend on them). Three columns:
`ours` (batches padded to the longest input rounded up to `--bucket_multiple`, as
`dpr_jax.reader.data.train_batch` pads), `torch` (the same bucketed shapes) and `torch_padded`
(padded to `--max_length`, as DPR's reader code pads). Both sides: random weights of the named
architecture, DPR's dropout 0.1, the same loss (selection cross-entropy + the marginal span NLL
over the positive's answer occurrences), clip 2.0 + AdamW. Medians per timed run, one JSON line
each, then ours / theirs.
"""
import argparse
import gzip
import json
import platform
import statistics

import numpy as np

import train_throughput as tt  # this directory


def sample_lengths(n: int, max_length: int, seed: int = 0) -> np.ndarray:
  from dpr_jax.data import resources
  from dpr_jax.data.corpus import read_corpus
  from dpr_jax.reader.data import ReaderTokenizer
  rng = np.random.default_rng(seed)
  with gzip.open(resources.squad_dir() / "train.qas.jsonl.gz", "rt") as f:
    qs = [json.loads(line)["question"] for line in f]
  corpus = read_corpus(resources.squad_dir() / "paragraphs.tsv.gz")
  tok = ReaderTokenizer(resources.minilm_path(), max_length=max_length, question_max_length=32)
  qi = rng.choice(len(qs), n, replace=False)
  pi = rng.choice(len(corpus.texts), n, replace=False)
  return np.array([len(tok.encode(qs[a], corpus.titles[b], corpus.texts[b]).ids)
                   for a, b in zip(qi, pi)])


def make_batches(a, vocab: int):
  """-> {impl: [batches]}, padding stats. Each batch: ids, mask [N, M, L], text_mask, spans."""
  from dpr_jax.data import buckets
  nm = a.questions * a.passages
  lengths = sample_lengths(nm * a.n_batches, a.max_length)
  rng = np.random.default_rng(1)
  out = {"ours": [], "torch": [], "torch_padded": []}
  real = fed_b = fed_p = 0
  for i in range(a.n_batches):
    ls = lengths[i * nm:(i + 1) * nm].reshape(a.questions, a.passages)
    for name, length in (("ours", buckets.bucket_length(int(ls.max()), a.bucket_multiple,
                                                        a.max_length)),
                         ("torch_padded", a.max_length)):
      ids = rng.integers(1000, vocab, (a.questions, a.passages, length)).astype(np.int32)
      mask = (np.arange(length) < ls[..., None]).astype(np.int32)
      text = mask.copy()
      text[..., :20] = 0
      start = rng.integers(20, ls[:, 0:1] - 4, (a.questions, 2)).astype(np.int32)
      b = {"ids": ids, "mask": mask, "text_mask": text, "span_start": start,
           "span_end": start + 2, "span_mask": np.ones((a.questions, 2), np.int32)}
      out[name].append(b)
      if name == "ours":
        out["torch"].append(b)
        fed_b += mask.size
      else:
        fed_p += mask.size
    real += int(ls.sum())
  stats = {"real_tokens": real, "padding_bucketed": round(1 - real / fed_b, 3),
           "padding_max": round(1 - real / fed_p, 3),
           "mean_length": round(float(lengths.mean()), 1)}
  return out, stats


def make_ours(a, cfg, batches):
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx
  from dpr_jax.models.reader import Reader
  from dpr_jax.reader.train import make_step
  from dpr_jax.training import sharding, steps
  mesh = sharding.make_mesh()
  graphdef, state = nnx.split(Reader(cfg, dtype=jnp.float32, rngs=nnx.Rngs(0)))
  params = jax.device_put(nnx.to_pure_dict(state), sharding.replicated(mesh))
  schedule = optax.constant_schedule(1e-5)
  tx = steps.make_optimizer(schedule, weight_decay=0.0, clip_norm=2.0)
  step = make_step(graphdef, tx, schedule, mesh)
  keys = {"ids": "input_ids", "mask": "attention_mask"}
  placed = [sharding.host_to_global({keys.get(k, k): v for k, v in b.items()}, mesh)
            for b in batches]
  box = [jax.jit(lambda p: steps.init_state(p, tx, 0))(params)]

  def run():
    for b in placed:
      box[0], m = step(box[0], b)
    m["train/loss"].block_until_ready()
  return run


def make_theirs(a, cfg, batches):
  import torch
  import transformers
  hf = transformers.DPRConfig(**{k: v for k, v in cfg.to_hf().items()
                                 if k not in ("architectures", "model_type")})
  model = transformers.DPRReader(hf)
  model.train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0)
  tb = [{k: torch.tensor(v, dtype=torch.long) for k, v in b.items()} for b in batches]

  def loss_fn(b):
    n, m, l = b["ids"].shape
    out = model(input_ids=b["ids"].view(n * m, l), attention_mask=b["mask"].view(n * m, l))
    start = out.start_logits.view(n, m, l)[:, 0].float()
    end = out.end_logits.view(n, m, l)[:, 0].float()
    sel = out.relevance_logits.view(n, m).float()
    text = b["text_mask"][:, 0] > 0
    ls = torch.log_softmax(start.masked_fill(~text, -1e9), -1)
    le = torch.log_softmax(end.masked_fill(~text, -1e9), -1)
    pair = ls.gather(1, b["span_start"]) + le.gather(1, b["span_end"])
    span = -torch.logsumexp(pair.masked_fill(b["span_mask"] == 0, -1e9), 1)
    return (span - torch.log_softmax(sel, -1)[:, 0]).mean()

  def run():
    for b in tb:
      loss = loss_fn(b)
      opt.zero_grad(set_to_none=True)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
      opt.step()
    loss.item()
  return run


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--arch", choices=sorted(tt.ARCHS), default="minilm")
  ap.add_argument("--questions", type=int, default=16)
  ap.add_argument("--passages", type=int, default=2)
  ap.add_argument("--max_length", type=int, default=350)
  ap.add_argument("--bucket_multiple", type=int, default=32)
  ap.add_argument("--n_batches", type=int, default=3, help="batches per timed run")
  tt.add_timing_args(ap, "ours,torch_padded,torch", warmup=1, steps=1)
  a = ap.parse_args()
  import jax
  from dpr_jax.models.bert import BertConfig
  cfg = BertConfig(**tt.ARCHS[a.arch], attention_probs_dropout_prob=0.1, hidden_dropout_prob=0.1)
  batches, stats = make_batches(a, cfg.vocab_size)
  impls = [s for s in a.impls.split(",") if s]
  makers = {"ours": make_ours, "torch": make_theirs, "torch_padded": make_theirs}
  runs = {n: makers[n](a, cfg, batches[n]) for n in impls}
  times = tt.time_runs(a, runs)
  common = {"bench": "reader_train", "arch": a.arch, "questions": a.questions,
            "passages": a.passages, "max_length": a.max_length,
            "bucket_multiple": a.bucket_multiple, "batches_per_run": a.n_batches, **stats,
            "device": getattr(jax.devices()[0], "device_kind", "cpu"),
            "machine": platform.machine(), "jax": jax.__version__, "tag": a.tag}
  rate = {}
  for n in impls:
    med = statistics.median(times[n])
    rate[n] = a.questions * a.n_batches / med
    print(json.dumps({"impl": n, "median_run_s": round(med, 4),
                      "questions_per_s": round(rate[n], 3), **common}), flush=True)
  if "ours" in rate:
    print(json.dumps({**{f"ratio_ours_over_{n}": round(rate["ours"] / rate[n], 3)
                         for n in rate if n != "ours"}, **common}), flush=True)


if __name__ == "__main__":
  main()
