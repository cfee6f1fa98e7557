"""Encode a passage corpus into embedding files, resumably, on all local devices.

Output in DIR, for shard i of n (a contiguous slice of the corpus rows):
- `part-{i:03d}-{c:05d}.npy`: the embeddings of chunk c, [rows, D] (fp16 or fp32), and
  `part-{i:03d}-{c:05d}.ids.txt`: their passage ids, one per line, in the same order.
  Each chunk is written to a temporary name and renamed, so a chunk file exists only whole.
- `fingerprint.txt`: the hash of the model's parameters; another model's run is refused.
- `encode-{i:03d}-of-{n:03d}.json`: the model (path, checkpoint, parameter fingerprint), the
  corpus, the count encoded and the chunk list, written when the shard is complete.
A re-run skips the chunks already on disk (after checking their ids), so a killed run loses at
most the chunk in flight and never duplicates an id.
"""
from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from tqdm import tqdm

from dpr_jax.data.textio import DataError, atomic_write, check_file, read_json, write_json
from dpr_jax.training import sharding, steps
from dpr_jax.training.inference import embed_bucketed


def shard_rows(n_rows: int, shard_id: int, num_shards: int) -> range:
  if not 0 <= shard_id < num_shards:
    raise ValueError(f"shard_id {shard_id} not in [0, {num_shards})")
  return range(n_rows * shard_id // num_shards, n_rows * (shard_id + 1) // num_shards)


def _atomic_save(path: Path, write):
  with atomic_write(path, "wb") as f:
    write(f)


def encode_corpus(model, tokenizer, corpus, out_dir, *, description: dict, shard_id: int = 0,
                  num_shards: int = 1, batch_size: int = 64, max_length: int = 256,
                  chunk_size: int = 4096, dtype: str = "float16", bucket: int = 32) -> dict:
  """Embeds this shard's passages with `model.passage`; returns the manifest. Each chunk is
  encoded in length-sorted batches padded to multiples of `bucket` tokens
  (`dpr_jax.data.buckets`; 0: every batch padded to `max_length`)."""
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  mesh = sharding.make_mesh(devices=jax.local_devices())
  graphdef, state = nnx.split(model)
  params = jax.device_put(nnx.to_pure_dict(state), sharding.replicated(mesh))
  encode_p = steps.make_encode(graphdef, "passage")
  from dpr_jax.training.checkpoint import fingerprint
  fp = fingerprint(params, model.passage.pooling, model.passage.normalize)
  rows = shard_rows(len(corpus), shard_id, num_shards)
  chunks = [rows[i:i + chunk_size] for i in range(0, len(rows), chunk_size)]
  manifest_path = out / f"encode-{shard_id:03d}-of-{num_shards:03d}.json"
  prev = out / "fingerprint.txt"  # one model per directory, whatever the sharding
  if prev.exists() and prev.read_text() != fp:
    raise DataError(f"{out}: expected embeddings of this model (fingerprint {fp}), found "
                    f"another model's ({prev.read_text()}); use a new --out directory")
  _atomic_save(prev, lambda f: f.write(fp.encode()))
  bar = tqdm(total=len(rows), desc=f"encode {shard_id}/{num_shards}", unit="psg", smoothing=0.1)
  files, encoded, t0 = [], 0, time.time()
  for c, chunk in enumerate(chunks):
    stem = f"part-{shard_id:03d}-{c:05d}"
    npy, ids_f = out / f"{stem}.npy", out / f"{stem}.ids.txt"
    ids = [corpus.ids[r] for r in chunk]
    files.append(stem)
    if npy.exists() and ids_f.exists():
      if ids_f.read_text().split("\n")[:-1] != ids:
        raise DataError(f"{ids_f}: expected the ids of rows {chunk.start}..{chunk.stop - 1} of "
                        f"{corpus.path}, found others (another corpus or sharding?)")
      bar.update(len(chunk))
      continue
    tok = tokenizer.passages([corpus.titles[r] for r in chunk], [corpus.texts[r] for r in chunk],
                             max_length=max_length, pad_to_max=False, pad_multiple=1)
    emb = embed_bucketed(encode_p, params, tok["input_ids"], tok["attention_mask"], batch_size,
                         mesh, bucket, max_length, local=True)
    bar.update(len(chunk))
    encoded += len(chunk)
    bar.set_postfix(psg_s=f"{encoded / (time.time() - t0):.1f}")
    _atomic_save(ids_f, lambda f: f.write("".join(i + "\n" for i in ids).encode()))
    _atomic_save(npy, lambda f: np.save(f, emb.astype(dtype)))
  bar.close()
  manifest = {**description, "fingerprint": fp, "corpus": str(Path(corpus.path).resolve()),
              "corpus_size": len(corpus), "shard_id": shard_id, "num_shards": num_shards,
              "rows": [rows.start, rows.stop], "count": len(rows), "dim": model.passage.dim,
              "dtype": dtype, "max_length": max_length, "parts": files,
              "passages_per_s_this_run": encoded / max(time.time() - t0, 1e-9)}
  write_json(manifest_path, manifest)
  return manifest


class EmbeddingParts:
  """The embedding parts of a finished encoding directory, read one at a time (re-iterable).

  Checks that every shard of the sharding is present and that all come from one model and one
  corpus; `identity` is what an index built from them records.
  """

  def __init__(self, emb_dir):
    self.dir = Path(emb_dir)
    if not self.dir.is_dir():
      raise FileNotFoundError(f"{self.dir}: expected an encode.py output directory, found "
                              + ("a file" if self.dir.exists() else "no such directory"))
    self.manifests = [_manifest(p) for p in sorted(self.dir.glob("encode-*-of-*.json"))]
    if not self.manifests:
      raise FileNotFoundError(f"{self.dir}: expected encode-*-of-*.json manifests, found none "
                              "(is encoding finished?)")
    first = self.manifests[0]
    for m in self.manifests:
      for k in ("fingerprint", "corpus", "num_shards"):
        if m[k] != first[k]:
          raise DataError(f"{self.dir}: expected shards of one model and corpus, found "
                          f"{k} {first[k]!r} and {m[k]!r}")
    have = sorted(m["shard_id"] for m in self.manifests)
    if have != list(range(first["num_shards"])):
      missing = sorted(set(range(first["num_shards"])) - set(have))
      raise FileNotFoundError(f"{self.dir}: expected {first['num_shards']} shards, found shards "
                              f"{missing} missing")
    self.identity = {"fingerprint": first["fingerprint"], "corpus": first["corpus"]}
    self.dim = first["dim"]
    self.size = sum(m["count"] for m in self.manifests)

  def __iter__(self):
    for m in self.manifests:
      for stem in m["parts"]:
        ids_f, npy = self.dir / f"{stem}.ids.txt", self.dir / f"{stem}.npy"
        ids = check_file(ids_f, "an embedding part's ids").read_text().split("\n")[:-1]
        try:
          e = np.load(check_file(npy, "an embedding part"))
        except (ValueError, EOFError, OSError) as err:
          if isinstance(err, FileNotFoundError):
            raise
          raise DataError(f"{npy}: expected a .npy array, found a corrupt file ({err})") from err
        if e.ndim != 2 or len(e) != len(ids) or e.shape[1] != self.dim:
          raise DataError(f"{npy}: expected [{len(ids)}, {self.dim}] embeddings (as its ids), "
                          f"found shape {list(e.shape)}")
        yield ids, e.astype(np.float32)


_MANIFEST_KEYS = ("fingerprint", "corpus", "num_shards", "shard_id", "parts", "count", "dim")


def _manifest(path: Path) -> dict:
  m = read_json(path, "an encode.py manifest")
  missing = [k for k in _MANIFEST_KEYS if not isinstance(m, dict) or k not in m]
  if missing:
    raise DataError(f"{path}: expected an encode.py manifest, found no {', '.join(missing)}")
  return m


def read_embeddings(emb_dir) -> tuple[list[str], np.ndarray, list[dict]]:
  """All shards of a finished directory -> (ids, [N, D] float32, manifests)."""
  parts = EmbeddingParts(emb_dir)
  ids, embs = [], []
  for part_ids, e in parts:
    ids += part_ids
    embs.append(e)
  return ids, np.concatenate(embs), parts.manifests
