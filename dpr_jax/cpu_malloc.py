"""glibc malloc settings that stop XLA:CPU from page-faulting its scratch memory on every step.

XLA:CPU allocates an executable's temporary buffer afresh for each run, with `malloc` on a worker
thread: 1.6 GiB for a MiniLM training step of 16 questions x 32 + 32 passages x 128 tokens.
glibc serves any request above 32 MiB with a new `mmap` and gives it back with `munmap` on
`free`, so on every step the kernel maps and zero-fills 419k fresh pages. Measured on 2 cores:
~500k minor page faults and 13-16 % of CPU time in the kernel per step (strace shows one
mmap/munmap pair of 1,715,556,352 bytes per step). PyTorch, whose tensors stay below glibc's
32 MiB mmap threshold, takes 1.5 %.

With one malloc arena, no mmap and no trimming, the freed buffer stays in the heap and the next
step reuses it: no page faults, and the MiniLM step is ~10-12 % faster, bert-base's ~20 %
(docs/performance.md).
The price is memory: the heap keeps its high-water mark, and the buffer, freed between
steps, leaves a hole that other allocations split, so the heap grows by one or two buffers
before it settles (MiniLM step: 3.6 GiB resident by default, 5.8-8.1 GiB tuned). That is why
it is opt-in: `DPR_JAX_MALLOC=1`.

glibc reads these settings only when a process starts (`mallopt` at run time caps retained
memory at 2 GiB, too little), so `ensure()` re-executes the current command once with them in
its environment. Command-line entry points call it first; it does nothing unless
`DPR_JAX_MALLOC=1`, on anything but Linux with glibc, or when any of the variables is already
set (the re-executed process, or a user's own choice).
"""
from __future__ import annotations

import os
import platform
import sys

SETTINGS = {
    "MALLOC_ARENA_MAX": "1",          # all threads share the main arena, which grows with brk
    "MALLOC_MMAP_MAX_": "0",          # never serve a request with its own mmap
    "MALLOC_TRIM_THRESHOLD_": str(1 << 40),  # never return freed heap memory to the kernel
}


def wanted(environ=os.environ) -> bool:
  """Whether `ensure()` would re-execute this process."""
  if environ.get("DPR_JAX_MALLOC", "0") != "1" or any(k in environ for k in SETTINGS):
    return False
  return sys.platform == "linux" and platform.libc_ver()[0] == "glibc"


def ensure() -> None:
  """Re-execute this process with `SETTINGS` in its environment when `wanted()`; returns
  otherwise. Call it first thing in a `__main__` block, before any work that would be lost."""
  if not wanted():
    return
  sys.stdout.flush()
  sys.stderr.flush()
  # orig_argv keeps the interpreter's own flags and `-m package.module` or `script.py`.
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, **SETTINGS})


def setting(environ=os.environ) -> str:
  """For benchmark records: "tuned" when this process runs with `SETTINGS`, else "default"."""
  return "tuned" if all(environ.get(k) == v for k, v in SETTINGS.items()) else "default"
