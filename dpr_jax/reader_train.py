"""`python -m dpr_jax.reader_train`: runs `dpr_jax.reader.train`."""
import runpy

if __name__ == "__main__":
  runpy.run_module("dpr_jax.reader.train", run_name="__main__", alter_sys=True)
