"""TPU chips and topologies described without the hardware: what `libtpu` compiles for.

`devices(name, num_slices)` returns the TPU devices of a topology (`jax.experimental.topologies`)
on any host with `libtpu` installed, so that `jax.jit(...).lower(...).compile()` builds a real
TPU executable on a CPU machine. Names are Cloud TPU accelerator types (`v5e-8`, `v4-8`) or
`VERSION:SHAPE` topologies (`v5e:2x4`, `v4:2x2x1`). v4 and v5p chips hold two TensorCores
presented as one device ("megacore"), as JAX presents them on a TPU VM; `v4-8` is 8 cores,
4 chips, `v5e-8` 8 chips.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import os


@dataclasses.dataclass(frozen=True)
class Chip:
  """One TPU chip's public figures (per chip; bandwidths in bytes/s, both directions summed for
  ICI). Sources: cloud.google.com/tpu/docs/{v4,v5e,v5p,v6e} (system architecture tables); v4's
  ICI from Jouppi et al., "TPU v4" (ISCA 2023): 6 links x 50 GB/s each way. DCN per chip:
  v5e 2 x 100 Gb/s NICs per host of 8 chips; v5p 50 Gb/s per chip (v5p page); None where no
  figure is published per chip."""
  name: str            # as in the topology name: v4, v5e, v5p, v6e
  kind: str            # device_kind reported by libtpu
  hbm_gib: float
  bf16_flops: float
  hbm_bytes_s: float
  ici_bytes_s: float
  dcn_bytes_s: float | None
  dims: int            # torus dimensions of a slice shape
  megacore: bool       # two TensorCores as one device
  accelerator: str     # Cloud accelerator-type prefix (v5litepod-8 ...)
  cores_per_chip: int  # what the accelerator-type suffix counts


CHIPS = {c.name: c for c in (
    Chip("v4", "TPU v4", 32, 275e12, 1200e9, 600e9, None, 3, True, "v4", 2),
    Chip("v5e", "TPU v5 lite", 16, 197e12, 819e9, 400e9, 25e9 / 8, 2, False, "v5litepod", 1),
    Chip("v5p", "TPU v5", 95, 459e12, 2765e9, 1200e9, 50e9 / 8, 3, True, "v5p", 2),
    Chip("v6e", "TPU v6 lite", 32, 918e12, 1640e9, 800e9, None, 2, False, "v6e", 1),
)}
# Cloud accelerator types -> shapes (chips per dimension) for the sizes the docs list.
SHAPES = {
    "v4": {8: "2x2x1", 16: "2x2x2", 32: "2x2x4", 64: "2x4x4", 128: "4x4x4", 256: "4x4x8",
           512: "4x8x8", 1024: "8x8x8"},
    "v5p": {8: "2x2x1", 16: "2x2x2", 32: "2x2x4", 64: "2x4x4", 128: "4x4x4", 256: "4x4x8",
            512: "4x8x8", 1024: "8x8x8"},
    "v5e": {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16",
            256: "16x16"},
    "v6e": {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16",
            256: "16x16"},
}
INSTALL = 'pip install -e ".[tpu-compile]"  (or: pip install "libtpu==0.0.42.1")'


class TopologyError(ValueError):
  """An unknown topology name, or libtpu missing."""


@dataclasses.dataclass(frozen=True)
class Topology:
  chip: Chip
  shape: str          # chips per dimension, e.g. 2x4
  num_slices: int

  @property
  def chips(self) -> int:
    return math.prod(int(x) for x in self.shape.split("x")) * self.num_slices

  @property
  def name(self) -> str:
    n = self.chips // self.num_slices * self.chip.cores_per_chip
    s = f"{self.chip.name}-{n} ({self.chip.name}:{self.shape}, {self.chips // self.num_slices} chips)"
    return s if self.num_slices == 1 else f"{self.num_slices} x {s}"

  @property
  def accelerator_type(self) -> str:
    return f"{self.chip.accelerator}-{self.chips // self.num_slices * self.chip.cores_per_chip}"


def known() -> str:
  """The names accepted, for error messages and --help."""
  parts = [f"{c}-{{{','.join(str(k) for k in SHAPES[c])}}}" for c in SHAPES]
  return ("; ".join(parts) + "; or VERSION:SHAPE with VERSION in " + ", ".join(CHIPS)
          + " (e.g. v5e:2x4, v4:2x2x2)")


def parse(name: str, num_slices: int = 1) -> Topology:
  """`v5e-8` or `v5e:2x4` -> Topology (TopologyError listing the known names otherwise)."""
  text = name.strip().lower()
  if ":" in text:
    version, _, shape = text.partition(":")
    chip = CHIPS.get(version)
    dims = shape.split("x")
    if chip and len(dims) == chip.dims and all(d.isdigit() and int(d) > 0 for d in dims):
      return Topology(chip, shape, num_slices)
  else:
    version, _, size = text.rpartition("-")
    chip = CHIPS.get(version)
    if chip and size.isdigit() and int(size) in SHAPES[chip.name]:
      return Topology(chip, SHAPES[chip.name][int(size)], num_slices)
  raise TopologyError(f"--topology: expected a TPU topology, found {name!r}; known: {known()}")


def libtpu_version() -> str:
  try:
    return importlib.metadata.version("libtpu")
  except importlib.metadata.PackageNotFoundError:
    raise TopologyError(f"libtpu is not installed, so TPU programs cannot be compiled here; "
                        f"install it with {INSTALL}") from None


def _quiet_libtpu(topo: Topology) -> None:
  """libtpu looks for a TPU VM's metadata (accelerator type, worker hostnames) and prints
  warnings when it finds none. Compiling for a described topology needs neither; naming this
  host as the only worker and the accelerator type compiled for silences them. A lockfile
  keeps a second process from loading libtpu for hardware; none is used here."""
  os.environ.setdefault("TPU_ACCELERATOR_TYPE", topo.accelerator_type)
  os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")


def devices(topo: Topology) -> list:
  """The TPU devices of `topo` (all slices), without TPU hardware."""
  libtpu_version()
  _quiet_libtpu(topo)
  from jax.experimental import topologies
  kw = {"chip_config_name": "megacore"} if topo.chip.megacore else {}
  if topo.num_slices > 1:
    kw["num_slices"] = topo.num_slices
  dims = [int(x) for x in topo.shape.split("x")] + [1] * (3 - topo.chip.dims)
  if dims[0] < 2 or dims[1] < 2:  # slices smaller than a host of 2x2 chips
    kw["chips_per_host_bounds"] = (min(dims[0], 2), min(dims[1], 2), 1)
  try:
    desc = topologies.get_topology_desc(topology_name=f"{topo.chip.name}:{topo.shape}",
                                        platform="tpu", **kw)
  except Exception as e:  # JaxRuntimeError: INVALID_ARGUMENT naming the layout
    reason = next((l for l in str(e).splitlines() if l.strip()), type(e).__name__)
    raise TopologyError(f"--topology: libtpu does not describe {topo.name}: {reason}; "
                        f"known: {known()}") from e
  devs = list(desc.devices)
  if len(devs) != topo.chips:
    raise TopologyError(f"--topology: {topo.name}: libtpu describes {len(devs)} devices, "
                        f"expected {topo.chips}")
  return devs
