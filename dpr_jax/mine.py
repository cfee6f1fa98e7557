"""`python -m dpr_jax.mine`: runs `dpr_jax.retrieval.mine`."""
import runpy

if __name__ == "__main__":
  runpy.run_module("dpr_jax.retrieval.mine", run_name="__main__", alter_sys=True)
