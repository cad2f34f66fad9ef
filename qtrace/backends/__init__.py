"""Stand-in backend processes a capture runs beside QEMU, inside the capture container.

Some devices are emulated only in part by QEMU: a vhost-user device's virtqueues are served by
another process on a unix socket, an ivshmem-doorbell device gets its shared memory and
interrupt eventfds from an ivshmem server. Without that process QEMU refuses to start (or waits
for it forever). A NIC given a network backend gets one whose other end is a stub too
(``net_frames``: frames from and to a unix socket, never a network). The modules here are
qtrace's own small servers for those protocols, written from the protocol specifications: they
answer what the front-end (QEMU) asks, accept the file descriptors it passes and do nothing
else. A vhost-user stub processes no virtqueue, so whatever a guest puts on one is never
served: captures show QEMU's side (the PCI transport, the register handlers) and say that the
queues belong to the stub.

Which device needs which process is data (``qtrace/devices/start.toml``, ``[[backend]]``); the
capture starts it before QEMU and stops it afterwards (:mod:`qtrace.launch.backends`).

These modules run in the image's ``python3`` with nothing but the standard library, as
``python3 -m qtrace_backends.<module>`` (the package is mounted under that name), so they
import one another only relatively and never import the rest of qtrace.
"""

__all__: list[str] = []
