"""The one module that names mesh axes.

The mesh has a `data` axis (batch parallelism) and an `fsdp` axis (batch parallelism that also
shards parameters, for models too large to replicate). Model code names logical axes only
(`vocab`, `embed`, `heads`, `mlp`, `proj`); `LOGICAL_RULES` maps them here.
"""
from __future__ import annotations

import functools

import os

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA, FSDP = "data", "fsdp"
BATCH = (DATA, FSDP)  # a global batch is split over both axes
LOGICAL_RULES = {"vocab": None, "embed": FSDP, "heads": None, "mlp": None, "proj": None}


def make_mesh(fsdp: int = 1, devices=None) -> Mesh:
  """All devices (of every process) as a (data, fsdp) mesh; `fsdp` must divide the count."""
  devices = jax.devices() if devices is None else devices
  n = len(devices)
  if fsdp < 1 or n % fsdp:
    raise ValueError(f"fsdp={fsdp} must divide the number of devices ({n})")
  slices = len({getattr(d, "slice_index", 0) or 0 for d in devices})
  if slices > 1:  # TPU slices joined by the data-center network: `data` spans the slices
    from jax.experimental import mesh_utils
    if (n // slices) % fsdp:
      raise ValueError(f"fsdp={fsdp} must divide the devices of one slice ({n // slices})")
    grid = mesh_utils.create_hybrid_device_mesh((n // slices // fsdp, fsdp), (slices, 1), devices)
    return Mesh(grid, BATCH, axis_types=(AxisType.Auto, AxisType.Auto))
  return jax.make_mesh((n // fsdp, fsdp), BATCH, axis_types=(AxisType.Auto, AxisType.Auto),
                       devices=devices)


def batch_size_multiple(mesh: Mesh) -> int:
  return mesh.shape[DATA] * mesh.shape[FSDP]


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over every device."""
  return NamedSharding(mesh, P(BATCH))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def _spec(var: nnx.Variable, mesh: Mesh) -> P:
  axes = var.get_metadata().get("logical_axes") or ()
  shape = var.get_value().shape
  spec = []
  for dim, name in zip(shape, axes):
    mesh_axis = LOGICAL_RULES.get(name)
    # A dimension the axis does not divide stays replicated rather than failing.
    ok = mesh_axis is not None and mesh.shape[mesh_axis] > 1 and dim % mesh.shape[mesh_axis] == 0
    spec.append(mesh_axis if ok else None)
  # Trailing Nones dropped: a compiled step returns P() where it was given P(None,), and the
  # two would key different compilations of the next step.
  while spec and spec[-1] is None:
    spec.pop()
  return P(*spec)


def param_shardings(params: nnx.State, mesh: Mesh):
  """A pytree of NamedShardings matching `params` (an nnx.State of Variables)."""
  return jax.tree.map(lambda v: NamedSharding(mesh, _spec(v, mesh)), params,
                      is_leaf=lambda x: isinstance(x, nnx.Variable))


def state_shardings(state_shape, param_shardings_tree, mesh: Mesh):
  """Shardings for a whole training state (params, optimizer moments, counters) from the
  parameters' shardings: every leaf whose tree path ends with a parameter's path (the
  parameter itself, Adam's mu / nu of it) takes that parameter's sharding; the rest (step
  counts, RNG) are replicated. Pinning these as `out_shardings` keeps the optimizer state sharded
  like the parameters (XLA's propagation leaves it replicated) and makes step N's output layout
  equal step N+1's input layout, so the step compiles once."""
  by_path = {tuple(p): s for p, s in jax.tree_util.tree_flatten_with_path(
      param_shardings_tree, is_leaf=lambda x: isinstance(x, NamedSharding))[0]}
  lengths = sorted({len(p) for p in by_path}, reverse=True)

  def pick(path, _):
    for n in lengths:
      if len(path) >= n and tuple(path[-n:]) in by_path:
        return by_path[tuple(path[-n:])]
    return replicated(mesh)
  return jax.tree_util.tree_map_with_path(pick, state_shape)


def gathered_loss(loss_fn, mesh: Mesh):
  """Runs `loss_fn(q_local, p_local, axis_name=...)` per device under shard_map.

  q: [B, D] and p: [B*(1+H), D] arrive batch-sharded; `loss_fn` all-gathers the passages over
  `axis_name` and returns replicated scalars. Gradients flow through the all-gather exactly.
  """
  fn = functools.partial(loss_fn, axis_name=BATCH)
  return jax.shard_map(fn, mesh=mesh, in_specs=(P(BATCH), P(BATCH)), out_specs=P())


def split_microbatches(x: jax.Array, mesh: Mesh, n: int) -> jax.Array:
  """[B, ...] batch-sharded -> [n, B/n, ...]: micro-batch i holds every device's i-th 1/n of its
  own slice, so splitting moves no data between devices and each micro-batch keeps every device
  busy."""
  d = batch_size_multiple(mesh)
  b = x.shape[0]
  if b % (d * n):
    raise ValueError(f"a batch of {b} does not split into {n} micro-batches on {d} devices")
  y = x.reshape(d, n, b // (d * n), *x.shape[1:]).swapaxes(0, 1).reshape(n, b // n, *x.shape[1:])
  return jax.lax.with_sharding_constraint(y, NamedSharding(mesh, P(None, BATCH)))


def merge_microbatches(y: jax.Array, mesh: Mesh) -> jax.Array:
  """Inverse of `split_microbatches`: [n, B/n, ...] -> [B, ...] batch-sharded."""
  d = batch_size_multiple(mesh)
  n, m = y.shape[:2]
  x = y.reshape(n, d, m // d, *y.shape[2:]).swapaxes(0, 1).reshape(n * m, *y.shape[2:])
  return jax.lax.with_sharding_constraint(x, batch_sharding(mesh))


def host_to_global(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's slice of a global batch -> globally batch-sharded arrays."""
  s = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(s, v) for k, v in local.items()}


def start_processes(coordinator: str | None, num_processes: int | None,
                    process_id: int | None):
  """`jax.distributed.initialize` when launched as several processes (flags, or the
  environment of a TPU pod / SLURM / Open MPI job when DPR_JAX_DISTRIBUTED=1)."""
  if coordinator:
    # Collectives between CPU processes (localhost tests, CPU clusters); ignored on GPU/TPU.
    # Asking for the backend here would initialise it too early, so set it unconditionally.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes, process_id)
  elif os.environ.get("DPR_JAX_DISTRIBUTED") == "1":
    jax.distributed.initialize()
