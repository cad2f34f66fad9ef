"""The host end of a NIC's ``-netdev stream`` for ``verify --live``: frames in, frames out.

Why: QEMU's NICs receive only from a network backend, and qtest has no command to hand a
NIC a frame. So the qtest machine gets ``-netdev stream,server=off,addr.type=unix`` on a
socket in the bind-mounted run directory, and the other end is this process: no frame goes
near an IP network (the container has no network), none comes from anywhere but the test.
The stream netdev frames each packet with its length (4 bytes, big-endian) both ways.

What the runner needs beyond sending: whether QEMU has read everything sent so far (Linux
answers ``TIOCOUTQ`` for a unix socket with the bytes the peer has not read yet), since
QEMU reads its socket on its main loop, after the qtest command that sent the frame has
returned; and the frames the guest transmitted, to compare with the model's.
"""

from __future__ import annotations

import array
import fcntl
import socket
import struct
import termios
import time

from qtrace.verify.steps import COMMAND_ENABLE, Side, Step, apply

__all__ = ["NETDEV_ID", "FrameLink", "check_wire", "drain_frames", "netdev_args"]

NETDEV_ID = "qtrace-net0"
READ_TIMEOUT_S = 2.0
"""How long QEMU may take to read what was sent (its main loop is busy only with us)."""
_LENGTH = struct.Struct(">I")
_POLL_S = 0.0002


def netdev_args(socket_path: str) -> list[str]:
    """QEMU's ``-netdev`` for a stream to ``socket_path``, where the test listens."""
    return [
        "-netdev",
        f"stream,id={NETDEV_ID},server=off,addr.type=unix,addr.path={socket_path}",
    ]


class FrameLink:
    """One connected stream netdev socket (QEMU is the client).

    Args:
        sock: The accepted connection; the link owns it from now on.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._sock.settimeout(READ_TIMEOUT_S)
        self._incoming = bytearray()
        self.frames_sent = 0

    def send(self, frame: bytes) -> None:
        """Send one frame to the NIC."""
        self._sock.sendall(_LENGTH.pack(len(frame)) + frame)
        self.frames_sent += 1

    def unread(self) -> int:
        """Bytes QEMU has not read yet (counted with the kernel's overhead: 0 or not)."""
        out = array.array("i", [0])
        fcntl.ioctl(self._sock.fileno(), termios.TIOCOUTQ, out)
        return out[0]

    def wait_read(self, timeout_s: float = READ_TIMEOUT_S) -> bool:
        """Wait until QEMU has read everything sent; False if it has not by ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.unread():
            if time.monotonic() > deadline:
                return False
            time.sleep(_POLL_S)
        return True

    def received(self) -> list[bytes]:
        """The frames QEMU sent (the guest transmitted) since the last call."""
        self._sock.setblocking(False)
        try:
            while True:
                chunk = self._sock.recv(1 << 16)
                if not chunk:
                    break
                self._incoming += chunk
        except BlockingIOError:
            pass
        finally:
            self._sock.settimeout(READ_TIMEOUT_S)
        frames = []
        while len(self._incoming) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._incoming)
            if len(self._incoming) < _LENGTH.size + length:
                break
            frames.append(bytes(self._incoming[_LENGTH.size : _LENGTH.size + length]))
            del self._incoming[: _LENGTH.size + length]
        return frames

    def close(self) -> None:
        self._sock.close()


def check_wire(qemu: Side, model: Side) -> tuple[str, str, int, int] | None:
    """After a step: has QEMU read the frames the model says its backend read, and sent
    those the model transmitted? ``(what, register, QEMU's, the model's)`` of the first
    difference (:class:`~qtrace.verify.live.Divergence`'s fields), or ``None``.

    The model's backend leaves frames unread only while the device holds one back
    (:meth:`~qtrace.devices.e1000.model.E1000.offer`); otherwise QEMU must read all it was
    sent, on its main loop: the runner waits for that, then asks QEMU something so that
    whatever the frames did (the interrupt line included) is there for the comparisons.
    """
    link: FrameLink | None = getattr(qemu, "link", None)
    nic = getattr(model, "nic", None)
    if link is None or nic is None:
        return None
    waiting = getattr(nic, "frames_waiting", (0, 0))[1]
    if not waiting:
        if not link.wait_read():
            return "frames", "frames the backend sent", 1, 0
        qemu.ram_read(0, 1)  # a round trip: QEMU is done with what it read
    elif not link.unread():
        return "frames", "frames the backend sent", 0, waiting
    ours: list[bytes] = getattr(model, "take_transmitted", list)()
    theirs = link.received()
    for number, (mine, qemus) in enumerate(zip(ours, theirs, strict=False)):
        if mine != qemus:
            at = next((i for i in range(min(len(mine), len(qemus))) if mine[i] != qemus[i]), -1)
            if at < 0:
                return "tx", f"length of transmitted frame {number}", len(qemus), len(mine)
            return "tx", f"transmitted frame {number} byte {at}", qemus[at], mine[at]
    if len(ours) != len(theirs):
        return "tx", "frames transmitted", len(theirs), len(ours)
    return None


def drain_frames(qemu: Side) -> None:
    """Empty what QEMU's network layer holds for the NIC from an earlier run (QEMU only).

    After ``system_reset`` the receiver is off, and a COMMAND write with bus mastering on
    is one of the e1000's flush points (observed in QEMU 10.2.2): the frames QEMU queued
    are dropped, then it reads what waited unread, which it queues again; a second write
    drops those.
    """
    link: FrameLink | None = getattr(qemu, "link", None)
    if link is None:
        return
    link.received()  # transmitted in the earlier run
    for _ in range(2):
        link.wait_read()
        apply(qemu, Step("write", "config", 0x04, 2, COMMAND_ENABLE))
    link.wait_read()
    qemu.ram_read(0, 1)
