"""The largest global batch whose train step fits a chip's memory, found from few compilations.

Compiled memory per chip is close to affine in the global batch (activations grow linearly;
the in-batch score matrix adds a small quadratic term), so instead of bisecting blindly over
batch sizes the search compiles two batches, fits the line through them, compiles the batch the
line predicts, and refits (a parabola through the three compiled points nearest the largest
fitting batch) until a fitting batch and a failing one a single multiple apart bracket the answer (or
`max_compiles` is spent, when the bracket is reported as it stands). Until a batch fails, each
guess is at most twice the largest fitting one: near the limit XLA's compiler rematerialises
activations to fit HBM, so memory flattens and the fitted curve would aim far beyond the limit.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def _predict(seen: dict[int, int], hbm: int, unit: int, lo: int, top: int) -> int:
  """The largest multiple of `unit` in (lo, top] whose predicted bytes fit, from the line
  (two points) or parabola (three) through the compiled batches nearest the bracket."""
  near = sorted(seen, key=lambda b: abs(b - lo))[:3]
  poly = np.polyfit(near, [seen[b] for b in near], min(2, len(near) - 1))
  a, b = lo // unit + 1, top // unit  # bisect on the fitted curve: no compilation
  if a > b or np.polyval(poly, a * unit) > hbm:
    return a * unit
  while a < b:
    m = (a + b + 1) // 2
    a, b = (m, b) if np.polyval(poly, m * unit) <= hbm else (a, m - 1)
  return a * unit


def search(total_bytes: Callable[[int], int], hbm: int, unit: int, start: int,
           max_compiles: int = 7, cap: int = 1 << 20, known: dict | None = None) -> dict:
  """`total_bytes(batch)`: compiled bytes per chip at a global batch (a multiple of `unit`).
  -> {"max_batch": largest batch seen to fit (0: none), "first_failing": smallest seen to
  fail (None: none), "exact": whether they are one `unit` apart, "points": [(batch, bytes)]}.
  `known`: batches already compiled -> their bytes."""
  seen: dict[int, int] = dict(known or {})

  def probe(b):
    if b not in seen:
      seen[b] = total_bytes(b)
    return seen[b]

  b1 = max(unit, start // unit * unit)
  b2 = b1 * 2
  probe(b1)
  probe(b2)
  while len(seen) < max_compiles + len(known or {}):
    fit = [b for b in seen if seen[b] <= hbm]
    fail = [b for b in seen if seen[b] > hbm]
    lo, hi = max(fit, default=0), min(fail, default=None)
    if hi is not None and hi - lo <= unit:
      break
    # Without a failing batch yet, at most double the largest fitting one: near the limit XLA
    # rematerialises to fit, the curve flattens, and a far guess costs host memory to compile.
    top = min(cap, max(2 * lo, 2 * unit)) if hi is None else hi - unit
    guess = _predict(seen, hbm, unit, lo, top)
    if guess in seen:  # the curve lands on a compiled batch: step next to the fitting one
      guess = lo + unit
    if guess in seen or guess > top:
      break
    probe(guess)
  fit = [b for b in seen if seen[b] <= hbm]
  fail = [b for b in seen if seen[b] > hbm]
  lo, hi = max(fit, default=0), min(fail, default=None)
  return {"max_batch": lo, "first_failing": hi,
          "exact": hi is not None and hi - lo <= unit,
          "points": sorted(seen.items())}
