"""`python -m dpr_jax.prepare`: runs `dpr_jax.tools.prepare`."""
import runpy

if __name__ == "__main__":
  runpy.run_module("dpr_jax.tools.prepare", run_name="__main__", alter_sys=True)
