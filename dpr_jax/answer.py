"""`python -m dpr_jax.answer`: runs `dpr_jax.reader.answer`."""
import runpy

if __name__ == "__main__":
  runpy.run_module("dpr_jax.reader.answer", run_name="__main__", alter_sys=True)
