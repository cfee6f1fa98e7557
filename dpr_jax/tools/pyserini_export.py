"""Passage embeddings as a Pyserini dense index: `OUT/index`, a FAISS flat inner-product index
(`faiss.write_index`), and `OUT/docid`, one passage id a line in the index's row order: the
layout `pyserini.search.faiss.FaissSearcher(OUT, query_encoder)` loads (`load_index`:
`faiss.read_index(OUT/index)` and the stripped lines of `OUT/docid`).

  python -m dpr_jax.export --format pyserini --embeddings emb/squad --out exported/squad-faiss

The vectors are those of `encode.py` as they are (unit length when the model normalises), so an
inner-product search with the same model's question embeddings gives `retrieve --index flat`'s
ranking. Both files are written under temporary names and renamed when complete.
"""
from __future__ import annotations

import os
from pathlib import Path

from dpr_jax.data.textio import DataError, atomic_write


def export_pyserini(emb_dir, out) -> dict:
  """Writes OUT/index and OUT/docid from an encode.py output folder; -> a summary."""
  import faiss
  from dpr_jax.retrieval.encoding import EmbeddingParts
  parts = EmbeddingParts(emb_dir)
  index, ids, seen = faiss.IndexFlatIP(parts.dim), [], set()
  for part_ids, e in parts:
    for pid in part_ids:
      if pid in seen:
        raise DataError(f"{emb_dir}: expected unique passage ids, found {pid!r} again")
      if pid != pid.strip() or not pid:
        raise DataError(f"{emb_dir}: expected passage ids without surrounding spaces (Pyserini "
                        f"strips its docid lines), found {pid!r}")
      seen.add(pid)
    ids += part_ids
    index.add(e)
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  tmp = out / f".index.tmp{os.getpid()}"
  try:
    faiss.write_index(index, str(tmp))
    with atomic_write(out / "docid") as f:
      f.write("".join(f"{pid}\n" for pid in ids))
    os.replace(tmp, out / "index")
  finally:
    tmp.unlink(missing_ok=True)
  return {"pyserini_index": str(out), "passages": len(ids), "dim": parts.dim,
          "metric": "inner product", "source": str(Path(emb_dir).absolute()),
          "fingerprint": parts.identity.get("fingerprint")}
