"""The virtio family's shared Python: the PCI transport, the split virtqueue and the device
models the virtio packs name (``qtrace/devices/virtio-rng-pci/pack.toml``, ...).

Why a package of its own (no ``pack.toml``): a pack folder is named after its QOM type
(``virtio-rng-pci``), which is not a Python identifier, and every virtio-pci device shares
the transport. Written from the Virtual I/O Device (VIRTIO) specification, version 1.x
(OASIS; ``transport-pci.tex``, ``split-ring.tex``, ``content.tex``, the device-type
chapters), with what QEMU 10.2.2 was seen to do under qtest where the specification leaves
a choice (each such rule says so).

* :mod:`~qtrace.devices.virtio.layout`: which BAR and offset hold each structure, read from
  the capabilities (as a driver does), from a trace's discovered regions, or QEMU 10.2.2's;
* :mod:`~qtrace.devices.virtio.virtqueue`: the split virtqueue (descriptors, available and
  used rings, notification suppression);
* :mod:`~qtrace.devices.virtio.transport`: the virtio-pci modern transport (common
  configuration, ISR, notifications, device-specific configuration, the PCI configuration
  access capability, MSI-X), for any device type;
* :mod:`~qtrace.devices.virtio.rng`: the entropy device on top of it.
"""
