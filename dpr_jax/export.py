"""`python -m dpr_jax.export`: runs `dpr_jax.tools.export`."""
import runpy

if __name__ == "__main__":
  runpy.run_module("dpr_jax.tools.export", run_name="__main__", alter_sys=True)
