"""`python -m dpr_jax.scaling`: runs `dpr_jax.tools.scaling`."""
import runpy

if __name__ == "__main__":
  runpy.run_module("dpr_jax.tools.scaling", run_name="__main__", alter_sys=True)
