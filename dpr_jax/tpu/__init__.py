"""Compiling DPR's steps for TPU topologies without a TPU (`python -m dpr_jax.compile`)."""
