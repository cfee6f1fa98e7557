"""Encode a passage corpus into embedding files, resumably, on all local devices.

Output in DIR, for shard i of n (a contiguous slice of the corpus rows):
- `part-{i:03d}-{c:05d}.npy`: the embeddings of chunk c, [rows, D] (fp16 or fp32), and
  `part-{i:03d}-{c:05d}.ids.txt`: their passage ids, one per line, in the same order.
  Each chunk is written to a temporary name and renamed, so a chunk file exists only whole.
- `identity.json`: every setting that changes a vector (`IDENTITY`: passage length, stored
  dtype, passage format, tokenizer and model fingerprints, pooling, normalisation, corpus),
  written before the first chunk. A run whose settings differ is refused before it writes
  anything, whether the folder is finished or cut short, so one folder never mixes two kinds of
  vectors; the index cache under the folder records and checks the same identity.
  `fingerprint.txt`: the model's hash alone (what folders written before `identity.json` hold).
- `encode-{i:03d}-of-{n:03d}.json`: the model (path, checkpoint, parameter fingerprint), the
  identity, the count encoded and the chunk list, written when the shard is complete.
A re-run skips the chunks already on disk (after checking their ids), so a killed run loses at
most the chunk in flight and never duplicates an id.
"""
from __future__ import annotations

import hashlib
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


# The settings that change a vector, in the order a mismatch names them.
IDENTITY = ("max_length", "dtype", "passage_format", "pooling", "normalize", "tokenizer",
            "fingerprint", "corpus")
PASSAGE_FORMAT = "[CLS] title [SEP] text [SEP]"  # models.tokenization's passages
_FLAGS = {"max_length": "--max_length", "dtype": "--dtype", "corpus": "--passages",
          "fingerprint": "model fingerprint (another model or checkpoint)",
          "tokenizer": "tokenizer fingerprint (another vocabulary or normalisation)",
          "pooling": "pooling", "normalize": "normalisation", "passage_format": "passage format"}


def tokenizer_fingerprint(tokenizer) -> str:
  """A short hash of the whole fast tokenizer (vocabulary, normaliser, pre-tokeniser)."""
  return hashlib.sha1(tokenizer.hf.backend_tokenizer.to_str().encode()).hexdigest()[:16]


def vector_identity(fingerprint: str, tokenizer, passage, corpus_path, *, max_length: int,
                    dtype: str) -> dict:
  """The `IDENTITY` of the vectors `encode_corpus` writes (`passage`: the passage encoder)."""
  return {"max_length": max_length, "dtype": dtype, "passage_format": PASSAGE_FORMAT,
          "pooling": passage.pooling, "normalize": bool(passage.normalize),
          "tokenizer": tokenizer_fingerprint(tokenizer), "fingerprint": fingerprint,
          "corpus": str(Path(corpus_path).resolve())}


def _recorded_identity(out: Path) -> dict:
  """What `out` already holds: its identity.json, or for an older folder what its
  fingerprint.txt and manifests say."""
  if (out / "identity.json").is_file():
    have = read_json(out / "identity.json", "an encoding folder's identity")
    if not isinstance(have, dict):
      raise DataError(f"{out / 'identity.json'}: expected an object of settings, found "
                      f"{str(have)[:80]}")
    return have
  have = {}
  for m in sorted(out.glob("encode-*-of-*.json")):
    m = read_json(m, "an encode.py manifest")
    have.update({k: m[k] for k in ("max_length", "dtype", "corpus") if k in m})
  if (out / "fingerprint.txt").is_file():
    have["fingerprint"] = (out / "fingerprint.txt").read_text()
  return have


def check_identity(out, identity: dict):
  """Refuses (DataError) a run into `out` whose vector settings differ from those of the
  vectors already there; a new folder passes."""
  out = Path(out)
  if not out.is_dir():
    return
  have = _recorded_identity(out)
  diff = [k for k in IDENTITY if k in have and have[k] != identity[k]]
  if diff:
    what = "; ".join(f"{_FLAGS[k]}: {have[k]!r} there, {identity[k]!r} in this run" for k in diff)
    raise DataError(f"{out}: expected the settings of the embeddings already in this folder, "
                    f"found other ones ({what}); encode into a new --out directory or re-run "
                    "with the folder's settings")


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
  mesh = sharding.make_mesh(devices=jax.local_devices())
  graphdef, state = nnx.split(model)
  params = jax.device_put(nnx.to_pure_dict(state), sharding.replicated(mesh))
  encode_p = steps.make_encode(graphdef, "passage")
  from dpr_jax.training.checkpoint import fingerprint
  fp = fingerprint(params, model.passage.pooling, model.passage.normalize)
  rows = shard_rows(len(corpus), shard_id, num_shards)
  chunks = [rows[i:i + chunk_size] for i in range(0, len(rows), chunk_size)]
  manifest_path = out / f"encode-{shard_id:03d}-of-{num_shards:03d}.json"
  identity = vector_identity(fp, tokenizer, model.passage, corpus.path, max_length=max_length,
                             dtype=dtype)
  check_identity(out, identity)  # one kind of vectors per directory, whatever the sharding
  out.mkdir(parents=True, exist_ok=True)
  write_json(out / "identity.json", identity)
  _atomic_save(out / "fingerprint.txt", lambda f: f.write(fp.encode()))
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
  manifest = {**description, **identity,
              "corpus_size": len(corpus), "shard_id": shard_id, "num_shards": num_shards,
              "rows": [rows.start, rows.stop], "count": len(rows), "dim": model.passage.dim,
              "parts": files,
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
    self.identity = self._identity(first)
    self.dim = first["dim"]
    self.size = sum(m["count"] for m in self.manifests)

  def _identity(self, first: dict) -> dict:
    """identity.json's settings (checked against the manifests); a folder written before
    identity.json: its model fingerprint and corpus."""
    if not (self.dir / "identity.json").is_file():
      return {"fingerprint": first["fingerprint"], "corpus": first["corpus"]}
    have = _recorded_identity(self.dir)
    for k in IDENTITY:
      if k not in have or first.get(k, have[k]) != have[k]:
        raise DataError(f"{self.dir / 'identity.json'}: expected {k} {first.get(k)!r} (as the "
                        f"manifests), found {have.get(k)!r}")
    return {k: have[k] for k in IDENTITY}

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
