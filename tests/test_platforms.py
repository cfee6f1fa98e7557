"""JAX platform choice before JAX loads: libtpu on a host without a TPU starts no TPU backend."""
import pytest

from dpr_jax import platforms


@pytest.fixture
def host(monkeypatch):
  """A host whose installed modules and TPU hardware the test sets."""
  state = {"modules": {"libtpu"}, "tpu": False}
  monkeypatch.setattr(platforms, "_installed", lambda name: name in state["modules"])
  monkeypatch.setattr(platforms, "has_tpu_hardware", lambda: state["tpu"])
  monkeypatch.delenv("JAX_PLATFORMS", raising=False)
  return state


@pytest.mark.parametrize("modules, tpu, preset, expected", [
    ({"libtpu"}, False, None, "cpu"),                          # CPU host with libtpu
    ({"libtpu", "jax_cuda12_plugin"}, False, None, "cuda,cpu"),  # GPU host with libtpu
    ({"libtpu"}, True, None, None),                            # a TPU VM: JAX chooses
    (set(), False, None, None),                                # no libtpu: nothing to avoid
    ({"libtpu"}, False, "tpu", "tpu"),                         # the user's choice stands
])
def test_jax_platforms_by_host(host, monkeypatch, modules, tpu, preset, expected):
  import os
  host["modules"], host["tpu"] = modules, tpu
  if preset:
    monkeypatch.setenv("JAX_PLATFORMS", preset)
  platforms.skip_tpu_without_hardware()
  assert os.environ.get("JAX_PLATFORMS") == expected


def test_tpu_hardware_is_seen_from_the_pci_vendor(tmp_path, monkeypatch):
  dev = tmp_path / "0000:00:04.0"
  dev.mkdir()
  (dev / "vendor").write_text("0x8086\n")
  monkeypatch.setattr(platforms.glob, "glob", lambda pattern: (
      [] if pattern.startswith("/dev/") else [str(dev / "vendor")]))
  assert not platforms.has_tpu_hardware()
  (dev / "vendor").write_text("0x1ae0\n")
  assert platforms.has_tpu_hardware()
