"""Minor page faults per call of a jitted function with a 64 MiB temporary, under glibc's
default malloc and under `dpr_jax.cpu_malloc.SETTINGS`, counted by the kernel (getrusage).

  python bench/cpu_malloc_faults.py [--calls 15]

Each setting runs in its own Python process (glibc reads the variables only at start-up): 10
warm-up calls, then the faults of each of `--calls` calls. Prints one JSON line per setting
(sorted faults, median) and the ratio default / tuned of the medians. 64 MiB is 16,384 pages:
by default they are faulted in again on every call; tuned, the freed buffer is reused (now and
then the heap still grows by one buffer, so most calls, not all, take no faults).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap

from dpr_jax import cpu_malloc

FAULTS = textwrap.dedent("""
  import resource, sys, jax, jax.numpy as jnp
  f = jax.jit(lambda x: jnp.tanh(x @ x.T) @ x)  # a 64 MiB temporary per call
  x = jnp.ones((4096, 256), jnp.float32)
  for _ in range(10):
    f(x).block_until_ready()
  faults = []
  for _ in range(int(sys.argv[1])):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
  print(*faults)
""")


def measure(settings: dict, calls: int) -> list[int]:
  env = {k: v for k, v in os.environ.items()
         if k not in cpu_malloc.SETTINGS and k not in ("DPR_JAX_MALLOC", "JAX_PLATFORMS")}
  env.update(JAX_PLATFORMS="cpu", **settings)
  out = subprocess.run([sys.executable, "-c", FAULTS, str(calls)], env=env, capture_output=True,
                       text=True, check=True)
  return sorted(int(v) for v in out.stdout.split()[-calls:])


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--calls", type=int, default=15)
  a = ap.parse_args()
  if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
    sys.exit("error: the settings are glibc malloc's; this platform's libc is "
             f"{platform.libc_ver()[0] or 'unknown'}")
  medians = {}
  for name, settings in (("default", {}), ("tuned", cpu_malloc.SETTINGS)):
    faults = measure(settings, a.calls)
    medians[name] = statistics.median(faults)
    print(json.dumps({"malloc": name, "faults_per_call": faults, "median": medians[name]}))
  print(json.dumps({"default_over_tuned_median": medians["default"] / max(medians["tuned"], 1)}))


if __name__ == "__main__":
  main()
