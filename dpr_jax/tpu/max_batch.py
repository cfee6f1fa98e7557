"""The largest global batch whose train step fits a chip's memory, found from few compilations.

Compiled memory per chip is close to affine in the global batch (activations grow linearly;
the in-batch score matrix adds a quadratic term), so instead of bisecting blindly over batch
sizes the search compiles two batches, fits the line through them, compiles the batch the line
predicts, and refits (a parabola through the three compiled points nearest the largest fitting
batch). Until a batch fails, each guess is at most `growth` times the largest fitting one: near
the limit XLA's compiler rematerialises activations to fit HBM, so memory flattens and the
fitted curve would aim far beyond the limit (2 by default; a GradCache step, whose memory hardly
grows until its score matrix dominates, can take larger strides).

Once a fitting batch and a failing one bracket the answer, the guess comes from the parabola
through the failing batch and the two largest fitting ones (the chord where that has no root
in the bracket), kept at least a quarter of the bracket below the failing batch and, with a
`tolerance`, that fraction above the fitting one: every compilation shrinks the bracket by a
share of itself, however flat or noisy the fitting points are. The search stops when the two
are a single multiple apart or within `tolerance` of the fitting one (or `max_compiles` is
spent, when the bracket is reported as it stands).
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


def _floor(lo: int, unit: int, tolerance: float) -> int:
  """The smallest guess above the fitting `lo` worth compiling: the tolerance's step, or one
  multiple."""
  return lo + max(unit, int(tolerance * lo) // unit * unit)


def _bracketed(seen: dict[int, int], hbm: int, unit: int, lo: int, hi: int,
               tolerance: float) -> int:
  """The next batch to compile strictly between the fitting `lo` and the failing `hi`."""
  if lo == 0:  # nothing fits yet: halve
    return max(unit, hi // 2 // unit * unit)
  below = sorted((b for b in seen if seen[b] <= hbm and b <= lo), reverse=True)[:2]
  xs = sorted(set(below) | {hi})
  ys = [seen[b] - hbm for b in xs]
  root = None
  if len(xs) == 3:
    roots = np.roots(np.polyfit(xs, ys, 2))
    real = [r.real for r in roots if abs(r.imag) < 1e-9 and lo < r.real < hi]
    root = min(real, default=None)
  if root is None:  # the chord between the fitting and the failing batch
    root = lo + (hi - lo) * (hbm - seen[lo]) / (seen[hi] - seen[lo])
  guess = int(root) // unit * unit
  ceiling = hi - max(unit, (hi - lo) // 4 // unit * unit)
  floor = _floor(lo, unit, tolerance)
  if floor > ceiling:  # a narrow bracket: its middle
    return min(max((lo + hi) // 2 // unit * unit, lo + unit), hi - unit)
  return min(max(guess, floor), ceiling)


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
    if hi is None:  # at most `growth` times the largest fitting batch: near the limit XLA
      # rematerialises to fit, the curve flattens, and a far guess costs host memory
      top = min(cap, max(int(growth * lo) // unit * unit, 2 * unit))
      guess = _predict(seen, hbm, unit, lo, top)
      if tolerance:  # no finer than the tolerance asks: a step past the limit ends the search
        guess = min(max(guess, _floor(lo, unit, tolerance)), top)
      if guess in seen:  # the curve lands on a compiled batch: step next to the fitting one
        guess = lo + unit
      if guess in seen or guess > top:
        break
    else:
      guess = _bracketed(seen, hbm, unit, lo, hi, tolerance)
    probe(guess)
  fit = [b for b in seen if seen[b] <= hbm]
  fail = [b for b in seen if seen[b] > hbm]
  lo, hi = max(fit, default=0), min(fail, default=None)
  return {"max_batch": lo, "first_failing": hi,
          "exact": hi is not None and hi - lo <= unit, "tolerance": tolerance,
          "points": sorted(seen.items())}
