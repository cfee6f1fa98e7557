"""Token lengths of real text, and batches with those lengths, for the throughput benchmarks.

  squad: SQuAD questions (train.qas.jsonl.gz) and SQuAD paragraphs (paragraphs.tsv.gz,
         `title [SEP] text` as DPR tokenises passages);
  w100:  the same questions, and DPR-style passages: each article's paragraphs joined and cut
         into 100-word windows (as DPR's psgs_w100.tsv cuts Wikipedia), with the article title.
Lengths are counted with the given tokenizer, truncated at the maximum lengths. A batch holds
sampled real lengths with random token ids (the compute does not depend on the ids), padded
to the bucket lengths of `dpr_jax.data.buckets` (the training data path's function) or to the
maximum.

  python bench/real_lengths.py --out bench/squad_token_lengths.json [--n 2048]
writes sampled lengths (MiniLM's uncased WordPiece, bert-base-uncased's vocabulary; at most 512)
for machines without the data or the tokenizer (`--lengths_file` of bench/train_throughput.py).
"""
from __future__ import annotations

import argparse
import gzip
import json

import numpy as np

from dpr_jax.data import buckets, resources
from dpr_jax.data.corpus import read_corpus


def w100_windows(texts, titles, words: int = 100):
  """DPR's passages: each article's text (its consecutive paragraphs of one title, joined) cut
  into consecutive windows of `words` words (an article's last window may be shorter)."""
  out_t, out_ti, i = [], [], 0
  while i < len(texts):
    j = i
    while j < len(texts) and titles[j] == titles[i]:
      j += 1
    w = " ".join(texts[i:j]).split()
    for s in range(0, len(w), words):
      out_t.append(" ".join(w[s:s + words]))
      out_ti.append(titles[i])
    i = j
  return out_t, out_ti


def sample_lengths(tok, source: str, n: int, q_len: int, p_len: int, seed: int = 0):
  """-> (question lengths [n], passage lengths [n]) in tokens, sampled without replacement."""
  rng = np.random.default_rng(seed)
  with gzip.open(resources.squad_dir() / "train.qas.jsonl.gz", "rt") as f:
    questions = [json.loads(line)["question"] for line in f]
  qs = [questions[i] for i in rng.choice(len(questions), n, replace=False)]
  corpus = read_corpus(resources.squad_dir() / "paragraphs.tsv.gz")
  texts, titles = corpus.texts, corpus.titles
  if source == "w100":
    texts, titles = w100_windows(texts, titles)
  elif source != "squad":
    raise ValueError(f"unknown length source {source!r}")
  sel = rng.choice(len(texts), n, replace=False)
  q = tok.questions(qs, max_length=q_len, pad_to_max=False, pad_multiple=1)
  p = tok.passages([titles[i] for i in sel], [texts[i] for i in sel], max_length=p_len,
                   pad_to_max=False, pad_multiple=1)
  return q["attention_mask"].sum(1), p["attention_mask"].sum(1)


def _side(rng, lengths, width, vocab):
  mask = (np.arange(width)[None] < np.asarray(lengths)[:, None]).astype(np.int32)
  return rng.integers(1000, vocab, mask.shape).astype(np.int32) * mask, mask


def train_batches(q_lengths, p_lengths, *, batch: int, per_question: int, n_batches: int,
                  q_len: int, p_len: int, multiple: int, vocab: int, seed: int = 0):
  """`n_batches` training batches of `batch` questions and `batch * per_question` passages of
  the given lengths (taken in order), each side padded to its bucket (`multiple` = 0: to
  q_len / p_len). -> list of {q_ids, q_mask, p_ids, p_mask} int32."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n_batches):
    ql = q_lengths[i * batch:(i + 1) * batch]
    pl = p_lengths[i * batch * per_question:(i + 1) * batch * per_question]
    if len(ql) < batch or len(pl) < batch * per_question:
      raise ValueError(f"{n_batches} batches need more sampled lengths")
    b = {}
    for side, lengths, max_len in (("q", ql, q_len), ("p", pl, p_len)):
      width = buckets.bucket_length(int(max(lengths)), multiple, max_len)
      b[f"{side}_ids"], b[f"{side}_mask"] = _side(rng, lengths, width, vocab)
    out.append(b)
  return out


def padded_to(batch: dict, q_len: int, p_len: int) -> dict:
  """The same batch padded to q_len / p_len (PyTorch DPR's shapes)."""
  out = {}
  for side, width in (("q", q_len), ("p", p_len)):
    out[f"{side}_ids"], out[f"{side}_mask"] = buckets.pad_to(batch[f"{side}_ids"],
                                                             batch[f"{side}_mask"], width)
  return out


def padding_stats(batches) -> dict:
  """Tokens padded / tokens fed per side over the batches, and the distinct shapes."""
  out = {}
  for side in ("q", "p"):
    fed = sum(b[f"{side}_mask"].size for b in batches)
    real = sum(int(b[f"{side}_mask"].sum()) for b in batches)
    out[f"{side}_padding"] = round(1 - real / fed, 4)
    out[f"{side}_widths"] = sorted({b[f"{side}_ids"].shape[1] for b in batches})
  return out


def load_lengths(path, source: str, n: int, q_len: int, p_len: int):
  """Lengths written by `main`, truncated at q_len / p_len: (q [n], p [n])."""
  d = json.loads(open(path).read())[source]
  if len(d["q"]) < n or len(d["p"]) < n:
    raise ValueError(f"{path}: {len(d['q'])} lengths of {source}, {n} needed")
  return np.minimum(d["q"][:n], q_len), np.minimum(d["p"][:n], p_len)


def padding_report(path, batch: int, multiple: int, max_len: int = 256) -> list[dict]:
  """Padding fractions (tokens padded / tokens fed) of consecutive batches of the lengths in
  `path`: questions in batches of `batch`, passages of 2 * `batch` (1 hard negative)."""
  rows = []
  for source in ("squad", "w100"):
    d = json.loads(open(path).read())[source]
    row = {"source": source, "batch": batch, "bucket_multiple": multiple, "max_length": max_len}
    for side, per in (("q", batch), ("p", 2 * batch)):
      lengths = np.minimum(d[side], max_len)
      n = len(lengths) // per * per
      fed = sum(per * bucket_length_of(lengths[i:i + per], multiple, max_len)
                for i in range(0, n, per))
      row[f"{side}_padding"] = round(1 - float(lengths[:n].sum()) / fed, 4)
      row[f"{side}_mean_tokens"] = round(float(lengths[:n].mean()), 1)
    rows.append(row)
  return rows


def bucket_length_of(lengths, multiple, max_len):
  return buckets.bucket_length(int(max(lengths)), multiple, max_len)


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--out", default="", help="write sampled lengths here")
  ap.add_argument("--n", type=int, default=2048)
  ap.add_argument("--padding", default="",
                  help="a lengths file: print padding fractions for batch 16 and 128, multiples "
                       "0 (pad to 256) and 32")
  a = ap.parse_args()
  if a.padding:
    for batch in (16, 128):
      for multiple in (0, 32):
        for row in padding_report(a.padding, batch, multiple):
          print(json.dumps(row))
    return
  from dpr_jax.models.tokenization import Tokenizer
  tok = Tokenizer(resources.minilm_path())
  out = {}
  for source in ("squad", "w100"):
    q, p = sample_lengths(tok, source, a.n, 512, 512)
    out[source] = {"q": [int(x) for x in q], "p": [int(x) for x in p]}
  with open(a.out, "w") as f:
    json.dump(out, f)
    f.write("\n")


if __name__ == "__main__":
  main()
