"""`python -m dpr_jax.evaluate`: runs `dpr_jax.retrieval.evaluate`."""
import runpy

if __name__ == "__main__":
  runpy.run_module("dpr_jax.retrieval.evaluate", run_name="__main__", alter_sys=True)
