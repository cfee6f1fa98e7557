"""FAISS indexes against a brute-force numpy top-k."""
import logging

import numpy as np
import pytest

from dpr_jax.retrieval import index as index_lib


def _data(n=3000, d=32, q=50, seed=0):
  """Random vectors around 50 random centres, with varied norms: text embeddings cluster by
  topic (isotropic Gaussians in 32-d are the worst case for graph search, recall ~0.74 at
  DPR's efSearch 128)."""
  rng = np.random.default_rng(seed)
  c = rng.normal(size=(50, d))
  pick = lambda m: c[rng.integers(50, size=m)] + 0.5 * rng.normal(size=(m, d))
  x = (pick(n) * rng.uniform(0.5, 2, size=(n, 1))).astype(np.float32)
  return x, pick(q).astype(np.float32)


def _parts(x, size=700):
  return [([f"p{i}" for i in range(s, min(s + size, len(x)))], x[s:s + size])
          for s in range(0, len(x), size)]


def _truth(x, q, k):
  s = q @ x.T
  return np.argsort(-s, axis=1, kind="stable")[:, :k], s


def test_flat_is_exact(tmp_path):
  x, q = _data()
  idx = index_lib.build(_parts(x), "flat", 32, {"fingerprint": "f", "corpus": "c"})
  scores, rows = idx.search(q, 10)
  truth, s = _truth(x, q, 10)
  np.testing.assert_array_equal(rows, truth)
  np.testing.assert_allclose(scores, np.take_along_axis(s, truth, 1), rtol=1e-5)
  idx.save(tmp_path / "i")
  again = index_lib.load(tmp_path / "i", {"fingerprint": "f"})
  np.testing.assert_array_equal(again.search(q, 10)[1], truth)
  assert again.ids[:2] == ["p0", "p1"]
  with pytest.raises(index_lib.IndexMismatch, match="fingerprint"):
    index_lib.load(tmp_path / "i", {"fingerprint": "other"})


def test_hnsw_recall_and_scores(tmp_path):
  x, q = _data()
  idx = index_lib.build(_parts(x), "hnsw", 32, {"fingerprint": "f"})
  scores, rows = idx.search(q, 10)
  truth, s = _truth(x, q, 10)
  recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, truth)])
  assert recall >= 0.95
  # The L2 distances are turned back into inner products.
  np.testing.assert_allclose(scores, np.take_along_axis(s, rows, 1), rtol=1e-3, atol=1e-3)
  idx.save(tmp_path / "h")
  np.testing.assert_array_equal(index_lib.load(tmp_path / "h").search(q, 10)[1], rows)


def test_ivfpq_finds_most_neighbours():
  x, q = _data(n=4000)
  idx = index_lib.build(_parts(x), "ivfpq", 32, {}, nlist=16, pq_m=16)
  _, rows = idx.search(q, 10)
  truth, _ = _truth(x, q, 10)
  recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, truth)])
  assert recall >= 0.4  # lossy by design; checks the index works end to end


@pytest.mark.parametrize("total, nlist, expect", [
    # 21M: nlist 4*floor(sqrt(21e6)) = 18,328; 256 per list would be 4,691,968 vectors, but
    # 4 GiB of 768-d fp32 vectors holds 4 * 2**30 / 3072 = 1,398,101 (76.3 per list).
    (21_000_000, 18_328, 1_398_101),
    # 1M: nlist 4,000; 256 per list = 1,024,000 > the corpus, so all of it.
    (1_000_000, 4_000, 1_000_000),
    # 10k: nlist min(400, 10,000 // 39) = 256; the 100k floor exceeds the corpus: all 10k.
    (10_000, 256, 10_000),
    # 200k: nlist 4 * 447 = 1,788; 256 per list = 457,728 > 200k: all of it.
    (200_000, 1_788, 200_000),
    # 5M: nlist 4 * 2236 = 8,944; 256 per list = 2,289,664 > 1,398,101 (the 4 GiB cap).
    (5_000_000, 8_944, 1_398_101),
])
def test_train_sample_size_hand_worked(total, nlist, expect):
  assert max(1, min(4 * int(np.sqrt(total)), total // 39)) == nlist  # build's default nlist
  assert index_lib.train_sample_size(total, nlist, 768) == expect


def test_train_sample_size_floor_and_memory_cap():
  # 300k vectors, 100 lists: 256 * 100 = 25,600 is below the 100k floor.
  assert index_lib.train_sample_size(300_000, 100, 768) == 100_000
  # 1 GiB of 1024-d fp32 vectors = 2**30 / 4096 = 262,144.
  assert index_lib.train_sample_size(10**7, 4_000, 1024, memory_gib=1) == 262_144


class _Records(logging.Handler):
  def __init__(self):
    super().__init__(logging.INFO)
    self.messages = []

  def emit(self, record):
    self.messages.append((record.levelname, record.getMessage()))


def _recording_ivfpq(monkeypatch):
  seen = []

  class Recording(index_lib.faiss.IndexIVFPQ):
    def train(self, x):
      seen.append(np.array(x))
      return super().train(x)

  monkeypatch.setattr(index_lib.faiss, "IndexIVFPQ", Recording)
  return seen


def test_ivfpq_trains_on_the_sample_size(monkeypatch):
  x, _ = _data(n=4000)
  seen = _recording_ivfpq(monkeypatch)
  records, logger = _Records(), logging.getLogger("dpr_jax")
  level = logger.level
  logger.addHandler(records)
  logger.setLevel(logging.INFO)
  try:
    index_lib.build(_parts(x), "ivfpq", 32, {}, nlist=16, pq_m=16)  # all 4,000 (< the floor)
    # 500 vectors of 32 fp32 = 64,000 bytes: the cap forces 500 / 16 = 31.25 per list < 39.
    index_lib.build(_parts(x), "ivfpq", 32, {}, nlist=16, pq_m=16,
                    train_memory_gib=500 * 128 / 2**30)
  finally:
    logger.removeHandler(records)
    logger.setLevel(level)
  np.testing.assert_array_equal(seen[0], x)
  assert seen[1].shape == (500, 32)
  rows = {r.tobytes(): i for i, r in enumerate(x)}
  picked = [rows[r.tobytes()] for r in seen[1]]  # every training vector is a corpus vector,
  assert len(set(picked)) == 500                  # none twice
  assert ("INFO", "ivfpq: training 16 lists on 500 of 4000 vectors (31.2 per list)") \
      in records.messages
  warnings = [m for level, m in records.messages if level == "WARNING"]
  assert len(warnings) == 1 and "31.2 training vectors per list, below the 39" in warnings[0]
