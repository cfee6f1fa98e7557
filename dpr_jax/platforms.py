"""Which JAX platforms a command may start, decided before JAX is loaded.

`libtpu` installed on a host with no TPU (it comes with `pip install -e ".[tpu-compile]"` and the
test requirements, for `python -m dpr_jax.compile`) makes JAX try the TPU backend in every
process: the first process takes `/tmp/libtpu_lockfile` and libtpu prints warnings about TPU
metadata it cannot find. On such a host `JAX_PLATFORMS` is set to the other platforms present
(a CUDA plugin's `cuda`, then `cpu`), unless the user has set it. A TPU VM (Google's PCI vendor id
on a device, or `/dev/accel*`) is left alone, as is a host without libtpu. Compiling for a
described TPU topology (`dpr_jax.tpu.topology`) loads libtpu itself and needs no TPU backend.
"""
from __future__ import annotations

import glob
import importlib.util
import os
from pathlib import Path

GOOGLE_PCI_VENDOR = "0x1ae0"
GPU_PLUGINS = {"cuda": ("jax_cuda13_plugin", "jax_cuda12_plugin"), "rocm": ("jax_rocm7_plugin",
                                                                           "jax_rocm60_plugin")}


def has_tpu_hardware() -> bool:
  if glob.glob("/dev/accel*"):
    return True
  for vendor in glob.glob("/sys/bus/pci/devices/*/vendor"):
    try:
      if Path(vendor).read_text().strip() == GOOGLE_PCI_VENDOR:
        return True
    except OSError:
      continue
  return False


def _installed(name: str) -> bool:
  try:
    return importlib.util.find_spec(name) is not None
  except (ImportError, ValueError):
    return False


def platforms_without_tpu() -> str:
  """`cuda,cpu` (or `rocm,cpu`) when a GPU plugin is installed, else `cpu`."""
  gpus = [p for p, mods in GPU_PLUGINS.items() if any(_installed(m) for m in mods)]
  return ",".join(gpus[:1] + ["cpu"])


def skip_tpu_without_hardware() -> None:
  """Sets JAX_PLATFORMS when libtpu is installed, no TPU is present and it is not set already."""
  if os.environ.get("JAX_PLATFORMS") or not _installed("libtpu") or has_tpu_hardware():
    return
  os.environ["JAX_PLATFORMS"] = platforms_without_tpu()
