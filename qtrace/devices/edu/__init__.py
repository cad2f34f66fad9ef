"""The edu device pack: QEMU's educational PCI device (data: pack.toml, registers.toml;
the reference model in :mod:`qtrace.devices.edu.model`, verify support in ``verify.py``)."""
