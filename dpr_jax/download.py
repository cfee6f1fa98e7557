"""`python -m dpr_jax.download`: runs `dpr_jax.data.download`."""
import runpy

if __name__ == "__main__":
  runpy.run_module("dpr_jax.data.download", run_name="__main__", alter_sys=True)
