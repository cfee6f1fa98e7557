"""`python -m dpr_jax.plot`: runs `dpr_jax.tools.plot`."""
import runpy

if __name__ == "__main__":
  runpy.run_module("dpr_jax.tools.plot", run_name="__main__", alter_sys=True)
