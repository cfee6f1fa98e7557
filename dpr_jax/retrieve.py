"""`python -m dpr_jax.retrieve`: runs `dpr_jax.retrieval.retrieve`."""
import runpy

if __name__ == "__main__":
  runpy.run_module("dpr_jax.retrieval.retrieve", run_name="__main__", alter_sys=True)
