"""`python -m dpr_jax.serve`: runs `dpr_jax.tools.serve`."""
import runpy

if __name__ == "__main__":
  runpy.run_module("dpr_jax.tools.serve", run_name="__main__", alter_sys=True)
