"""What a compiled TPU executable says about itself: memory per chip, XLA's cost model, the
collectives of its HLO, and a roofline built from them.

The roofline takes each of compute (FLOPs over the chip's bf16 peak), memory traffic (XLA's
"bytes accessed" over HBM bandwidth) and communication (collective bytes over ICI, or DCN for
collectives that cross slices) at its peak, overlapping perfectly; the largest is the estimate
and names the binding bound. Compute and communication are lower bounds. XLA's bytes accessed
sums the operands and results of every top-level op as if each went through HBM, and counts a
loop body once, so the HBM term can overstate a step (data kept on chip) or understate a loop.
fp32 matrix products run below the bf16 peak, so fp32 programs are further from the estimate.
"""
from __future__ import annotations

import re

import numpy as np

GIB = 2 ** 30
_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4,
          "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8}
_SHAPE = re.compile(r"\b(" + "|".join(_BYTES) + r")\[([\d,]*)\]")
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "collective-permute", "all-to-all")
_OP = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.+?)\s+(" + "|".join(COLLECTIVES)
                 + r")(-start)?\(")
# Collectives across slices: host transfers to the Megascale (DCN) runtime, one `send` per piece.
_DCN = re.compile(r"^\s*%?[\w.\-]+\s*=\s*\((.+?), u32\[\], token\[\]\)\s+send\(.*"
                  r'xla_megascale_runtime.*_xla_host_transfer_rendezvous="([a-z_\-]+)')
_COMP = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\)\s*->\s*.*\{\s*$")
_CALL = re.compile(r"\b(calls|body|to_apply|condition|branch_computations|called_computations)"
                   r"=(\{[^}]*\}|%?[\w.\-]+)")
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"')


def memory(compiled, chip) -> dict:
  """Per-chip bytes of the executable and whether they fit the chip's HBM."""
  m = compiled.memory_analysis()
  out = {k: int(getattr(m, f"{k}_size_in_bytes")) for k in
         ("argument", "output", "alias", "temp", "generated_code")}
  total = out["argument"] + out["output"] - out["alias"] + out["temp"] + out["generated_code"]
  out["total"] = total
  out["hbm"] = int(chip.hbm_gib * GIB)
  out["fits"] = total <= out["hbm"]
  return out


def out_of_memory(reason: str) -> dict | None:
  """XLA's refusal of a program larger than HBM (`RESOURCE_EXHAUSTED: ... required for ...
  (40.00G) exceeds available HBM (15.75G)`) -> {total, hbm, fits: False}; else None."""
  m = re.search(r"RESOURCE_EXHAUSTED.*?\(([\d.]+)([KMGT]?)\) exceeds available HBM "
                r"\(([\d.]+)([KMGT]?)\)", reason)
  if not m:
    return None
  scale = lambda unit: 1024 ** " KMGT".index(unit or " ")
  return {"total": int(float(m.group(1)) * scale(m.group(2))),
          "hbm": int(float(m.group(3)) * scale(m.group(4))), "fits": False,
          "rejected_by_xla": True}


def fits_text(mem: dict) -> str:
  if mem["fits"]:
    return f"fits ({(mem['hbm'] - mem['total']) / GIB:.2f} GiB to spare)"
  return f"short by {(mem['total'] - mem['hbm']) / GIB:.2f} GiB"


def cost(compiled) -> dict:
  """XLA's TPU cost model for one chip: flops, bytes accessed, optimal_seconds."""
  c = compiled.cost_analysis()
  c = c[0] if isinstance(c, (list, tuple)) else c
  return {"flops": float(c.get("flops", 0.0)), "bytes_accessed": float(c.get("bytes accessed", 0.0)),
          "optimal_seconds": float(c.get("optimal_seconds", float("nan")))}


def _shapes_bytes(text: str) -> list[int]:
  return [_BYTES[t] * int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
          for t, dims in _SHAPE.findall(text)]


def replica_groups(line: str) -> list[list[int]] | None:
  """The device groups of a collective: explicit `{{0,1},{2,3}}`, iota `[G,S]<=[dims]T(perm)`, or
  mesh axes `mesh['a'=4,'b'=2] {'a'}` (a group: the devices that differ along the listed axes)."""
  m = re.search(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}", line)
  if m:
    axes = [(n, int(s)) for n, s in re.findall(r"'([^']+)'=(\d+)", m.group(1))]
    listed = re.findall(r"'([^']+)'", m.group(2))
    names = [n for n, _ in axes]
    ids = np.arange(int(np.prod([s for _, s in axes]))).reshape([s for _, s in axes])
    order = [i for i, n in enumerate(names) if n not in listed] + [names.index(n) for n in listed]
    size = int(np.prod([s for n, s in axes if n in listed]))
    return ids.transpose(order).reshape(-1, size).tolist()
  m = re.search(r"replica_groups=\[(\d+),(\d+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?", line)
  if m:
    g, s = int(m.group(1)), int(m.group(2))
    dims = [int(d) for d in m.group(3).split(",")]
    ids = np.arange(int(np.prod(dims))).reshape(dims)
    if m.group(4):
      ids = ids.transpose([int(p) for p in m.group(4).split(",")])
    return ids.reshape(g, s).tolist()
  m = re.search(r"replica_groups=\{(\{[\d,]*\}(?:,\{[\d,]*\})*)\}", line)
  if m:
    return [[int(x) for x in grp.split(",") if x] for grp in re.findall(r"\{([\d,]*)\}",
                                                                       m.group(1))]
  m = re.search(r"source_target_pairs=\{(.*?)\}\}", line)
  if m:
    return [[int(x) for x in p.split(",")] for p in re.findall(r"\{(\d+,\d+)", m.group(0))]
  return None


def _computations(hlo: str) -> dict[str, list[str]]:
  comps, name, entry = {}, None, None
  for line in hlo.splitlines():
    m = _COMP.match(line)
    if m:
      name = m.group(1)
      comps[name] = []
      if line.startswith("ENTRY"):
        entry = name
    elif line.startswith("}"):
      name = None
    elif name is not None:
      comps[name].append(line)
  comps["__entry__"] = [entry]
  return comps


def _condition_trips(lines: list[str]) -> int | None:
  """A counted loop's trip count from its condition `counter < constant(N)` (a loop counter
  from 0, as XLA emits for scan / map); None for any other condition."""
  consts = dict(re.findall(r"%([\w.\-]+) = s32\[\][^=]*constant\((\d+)\)", "\n".join(lines)))
  for line in lines:
    m = re.search(r"compare\(%[\w.\-]+, %([\w.\-]+)\), direction=LT", line)
    if m and m.group(1) in consts:
      return int(consts[m.group(1)])
  return None


def _multipliers(comps: dict) -> dict[str, int]:
  """How many times each computation runs per call of the entry: while bodies with a known trip
  count run that many times (nested loops multiply)."""
  mult = {comps["__entry__"][0]: 1}
  stack = [comps["__entry__"][0]]
  while stack:
    c = stack.pop()
    for line in comps.get(c, []):
      trip = _TRIP.search(line)
      trips = int(trip.group(1)) if trip else None
      calls = _CALL.findall(line)
      if trips is None and " while(" in line:
        cond = [n for kind, n in calls if kind == "condition"]
        trips = _condition_trips(comps.get(cond[0].lstrip("%"), [])) if cond else None
      for kind, names in calls:
        for callee in re.findall(r"[\w.\-]+", names.replace("%", "")):
          k = trips if (trips and kind == "body") else 1
          if callee in comps and mult.get(callee, 0) < mult[c] * k:
            mult[callee] = mult[c] * k
            stack.append(callee)
  return mult


def collectives(hlo: str, device_slices: list[int] | None = None) -> list[dict]:
  """Every collective of the HLO (`-done` halves skipped): op, result shapes, bytes of the
  buffer each chip ends with, group size, how many times it runs per step, and whether its
  groups span several slices (`device_slices[i]`: the slice of logical device i)."""
  comps = _computations(hlo)
  mult = _multipliers(comps)
  out = []
  for comp, lines in comps.items():
    if comp == "__entry__":
      continue
    for line in lines:
      d = _DCN.match(line)
      if d:
        out.append({"op": d.group(2).replace("_", "-").rstrip("-") + " over DCN",
                    "shapes": [f"{t}[{x}]" for t, x in _SHAPE.findall(d.group(1))],
                    "bytes": sum(_shapes_bytes(d.group(1))), "group": 2,
                    "count": mult.get(comp, 1), "cross_slice": True, "dcn": True,
                    "source": d.group(2), "chain": None, "instances": 1})
        continue
      m = _OP.match(line)
      if not m:
        continue
      rtype, op, start = m.group(1), m.group(2), bool(m.group(3))
      sizes = _shapes_bytes(rtype)
      if start and rtype.startswith("(") and op != "all-reduce" and len(sizes) > 1:
        sizes = sizes[len(sizes) // 2:]  # (operands, results)
      groups = replica_groups(line)
      g = len(groups[0]) if groups and op != "collective-permute" else 2
      cross = bool(device_slices and groups and any(
          len({device_slices[d] for d in grp}) > 1 for grp in groups))
      shapes = [f"{t}[{d}]" for t, d in _SHAPE.findall(rtype)]
      if start and rtype.startswith("(") and op != "all-reduce" and len(shapes) > 1:
        shapes = shapes[len(shapes) // 2:]
      name = re.search(r'op_name="([^"]*)"', line)
      chain = re.search(r'channel_id=(\d+).*chain_id="(\d+)"', line)
      out.append({"op": op, "shapes": shapes, "bytes": sum(sizes), "group": g,
                  "count": mult.get(comp, 1), "cross_slice": cross,
                  "source": name.group(1) if name else "",
                  "chain": chain.groups() if chain else None, "instances": 1})
  return _one_per_chain(out)


def _one_per_chain(colls: list[dict]) -> list[dict]:
  """XLA:TPU runs an asynchronous collective as one `async-collective-start` and continuation
  fusions (`async_collective_fusion`) that each advance it beside some compute: the HLO then
  holds one instruction per continuation, all on one channel and `chain_id`, which move the
  data once. Such instructions are merged into one collective (`instances`: how many)."""
  merged, out = {}, []
  for c in colls:
    if c["chain"] is None:
      out.append(c)
      continue
    key = (c["op"], c["chain"], tuple(c["shapes"]))
    if key in merged:
      m = merged[key]
      m["instances"] += 1
      m["count"] = min(m["count"], c["count"])
    else:
      merged[key] = dict(c)
      out.append(merged[key])
  return out


def traffic(c: dict) -> float:
  """Bytes one chip sends for collective `c` once (ring algorithms)."""
  g, b = c["group"], c["bytes"]
  if c.get("dcn"):  # the piece this chip sends to the Megascale runtime
    return b
  if c["op"] == "all-reduce":
    return 2 * b * (g - 1) / g
  if c["op"] == "reduce-scatter":
    return b * (g - 1)  # b is the scattered result
  if c["op"] == "collective-permute":
    return b
  return b * (g - 1) / g  # all-gather (b: the gathered result), all-to-all


def summarize(colls: list[dict]) -> list[dict]:
  """Collectives grouped by (op, shapes, group, crossing): count per step and bytes."""
  groups = {}
  for c in colls:
    key = (c["op"], tuple(c["shapes"]), c["group"], c["cross_slice"])
    s = groups.setdefault(key, {"op": c["op"], "shapes": c["shapes"], "group": c["group"],
                                "cross_slice": c["cross_slice"], "ops": 0, "count": 0,
                                "bytes": c["bytes"], "traffic": 0.0, "instances": 0})
    s["ops"] += 1
    s["instances"] += c["instances"]
    s["count"] += c["count"]
    s["traffic"] += traffic(c) * c["count"]
  return sorted(groups.values(), key=lambda s: -s["traffic"])


LOOP_UNDERCOUNT = 2.0  # analytic / XLA FLOPs above which the HBM term covers one loop pass


def roofline(model_flops_chip: float, xla: dict, colls: list[dict], chip) -> dict:
  """Step time at best (seconds) from each bound, the binding one, and the MFU it implies
  (`model_flops_chip`: the analytic FLOPs per chip)."""
  ici = sum(traffic(c) * c["count"] for c in colls if not c["cross_slice"])
  dcn = sum(traffic(c) * c["count"] for c in colls if c["cross_slice"])
  # XLA's cost analysis counts a loop body once (the search's scan over chunks, GradCache's
  # micro-batch loops): the analytic count is the floor of the compute term.
  bounds = {"compute": max(xla["flops"], model_flops_chip) / chip.bf16_flops,
            "hbm": xla["bytes_accessed"] / chip.hbm_bytes_s,
            "ici": ici / chip.ici_bytes_s}
  if dcn and chip.dcn_bytes_s:
    bounds["dcn"] = dcn / chip.dcn_bytes_s
  bound = max(bounds, key=bounds.get)
  t = bounds[bound]
  opt = xla["optimal_seconds"]
  # Analytic FLOPs well above XLA's: a loop XLA counted once, whose bytes it also counted once.
  undercount = model_flops_chip / xla["flops"] if xla["flops"] > 0 else float("inf")
  return {"seconds": t, "bound": bound, "bounds": bounds, "ici_bytes": ici, "dcn_bytes": dcn,
          "loop_undercount": undercount if undercount > LOOP_UNDERCOUNT else None,
          "mfu": model_flops_chip / (t * chip.bf16_flops) if t > 0 else float("nan"),
          "xla_optimal_seconds": opt,
          "xla_mfu": (model_flops_chip / (opt * chip.bf16_flops) if opt > 0
                      else float("nan"))}
