"""The largest global batch whose train step fits a chip's memory, found from few compilations.

Compiled memory per chip is close to affine in the global batch (activations grow linearly;
the in-batch score matrix adds a small quadratic term), so instead of bisecting blindly over
batch sizes the search compiles two batches, fits the line through them, compiles the batch the
line predicts, and refits (a parabola through the three compiled points nearest the largest
fitting batch) until a fitting batch and a failing one bracket the answer: a single multiple
apart, or within `tolerance` of the fitting one (or `max_compiles` is spent, when the bracket is
reported as it stands). Until a batch fails, each guess is at most `growth` times the largest
fitting one: near the limit XLA's compiler rematerialises activations to fit HBM, so memory
flattens and the fitted curve would aim far beyond the limit (2 by default; a GradCache step,
whose memory hardly grows with the batch, can take larger strides).
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
           max_compiles: int = 7, cap: int = 1 << 22, known: dict | None = None,
           tolerance: float = 0.0, growth: float = 2.0) -> dict:
  """`total_bytes(batch)`: compiled bytes per chip at a global batch (a multiple of `unit`).
  -> {"max_batch": largest batch seen to fit (0: none), "first_failing": smallest seen to
  fail (None: none), "exact": whether they are one `unit` apart, "points": [(batch, bytes)]}.
  `known`: batches already compiled -> their bytes. `tolerance`: stop once the failing batch
  is within this fraction of the fitting one. `growth`: the largest step, as a factor of the
  largest fitting batch, before a batch fails."""
  seen: dict[int, int] = dict(known or {})

  def close(lo, hi):
    return hi is not None and hi - lo <= max(unit, tolerance * lo)

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
    if close(lo, hi):
      break
    # Without a failing batch yet, at most `growth` times the largest fitting one: near the
    # limit XLA rematerialises to fit, the curve flattens, and a far guess costs host memory.
    top = (min(cap, max(int(growth * lo) // unit * unit, 2 * unit)) if hi is None
           else hi - unit)
    guess = _predict(seen, hbm, unit, lo, top)
    if guess in seen:  # the curve lands on a compiled batch: step next to the fitting one
      guess = lo + unit
    if guess in seen or guess > top:
      break
    if hi is not None and tolerance:  # a bracket to narrow: no finer than the tolerance asks
      guess = min(max(guess, lo + int(tolerance * lo) // unit * unit), hi - unit)
      if guess in seen:
        guess = (lo + hi) // 2 // unit * unit
        if guess in seen:
          break
    probe(guess)
  fit = [b for b in seen if seen[b] <= hbm]
  fail = [b for b in seen if seen[b] > hbm]
  lo, hi = max(fit, default=0), min(fail, default=None)
  return {"max_batch": lo, "first_failing": hi,
          "exact": hi is not None and hi - lo <= unit, "tolerance": tolerance,
          "points": sorted(seen.items())}
