"""Real QEMU under qtest in the debug image: the other side of the differential test.

Why a unix socket in a bind-mounted directory: qtest and QMP are both line protocols,
and a socket the host listens on (QEMU connects to it as a client, as QEMU's own libqtest
does) avoids unpicking Docker's multiplexed attach stream. The container has no network,
is the shared :class:`~qtrace.docker_env.LabelledContainer` (kind ``verify``: it carries the
owner labels every qtrace container has, so the leftover guard sees it), and is removed on
every exit path (normal, error, Ctrl-C) by :meth:`QemuQtest.close`.

QMP is used for one thing: ``system_reset`` between random sequences, waiting for the
``RESET`` event so the next qtest command sees the machine after reset.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import docker
from qtrace.devices import qemu_device_option
from qtrace.docker_env import ContainerKind, ContainerSpec, LabelledContainer, new_run_id
from qtrace.errors import LaunchFailure
from qtrace.verify.netdev import NETDEV_ID, FrameLink, netdev_args
from qtrace.verify.qtest import ByteStream, QtestClient
from qtrace.verify.steps import DEFAULT_BARS, QemuSide
from qtrace.verify.support import VerifyDevice

__all__ = ["QEMU_BINARY", "QemuQtest", "qtest_argv"]

logger = logging.getLogger(__name__)

QEMU_BINARY = "/src/qemu/build/qemu-system-x86_64"
FIRMWARE_DIRS = ("/usr/share/seabios", "/usr/lib/ipxe/qemu", "/usr/share/qemu")
_MOUNT = "/qt"
_QTEST_SOCK = "qtest.sock"
_QMP_SOCK = "qmp.sock"
_NET_SOCK = "net.sock"
_CONNECT_TIMEOUT_S = 30.0
_REPLY_TIMEOUT_S = 30.0


def qtest_argv(device: VerifyDevice, mount: str = _MOUNT) -> list[str]:
    """QEMU's command line: a pc machine, no firmware run, the one device where and how
    its pack's ``[model.qtest]`` says (slot, properties; a NIC's network backend is a
    stream whose other end is the test, :mod:`qtrace.verify.netdev`)."""
    if device.qtest is None:
        raise LaunchFailure(f"the {device.name} pack has no [model.qtest] setup")
    properties = device.qtest.properties
    if device.qtest.netdev:
        properties = (*properties, ("netdev", NETDEV_ID))
    argv = [
        QEMU_BINARY,
        "-machine", "pc",
        "-accel", "qtest",
        "-qtest", f"unix:{mount}/{_QTEST_SOCK}",
        "-qtest-log", "/dev/null",
        "-qmp", f"unix:{mount}/{_QMP_SOCK}",
        "-nodefaults",
        "-display", "none",
        "-device", qemu_device_option(device.name, device.qtest.slot, properties),
    ]  # fmt: skip
    if device.qtest.netdev:
        argv += netdev_args(f"{mount}/{_NET_SOCK}")
    for directory in FIRMWARE_DIRS:
        argv += ["-L", directory]
    return argv


class _Qmp:
    """Just enough QMP: capabilities negotiation and a command that waits for an event."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self._message()  # greeting
        self.execute("qmp_capabilities")

    def _message(self) -> dict[str, Any]:
        line = self._stream.readline()
        if not line:
            raise LaunchFailure("QEMU closed the QMP channel")
        message: dict[str, Any] = json.loads(line)
        return message

    def execute(self, command: str, wait_event: str | None = None) -> None:
        """Run ``command``; with ``wait_event``, also wait until that event arrives."""
        self._stream.write(json.dumps({"execute": command}).encode() + b"\n")
        returned = wait_event is None
        seen = False
        while not (returned and (seen or wait_event is None)):
            message = self._message()
            if "error" in message:
                raise LaunchFailure(f"QMP {command} failed: {message['error']}")
            returned = returned or "return" in message
            seen = seen or message.get("event") == wait_event


class QemuQtest:
    """QEMU 10.2.2 with one device under qtest, in a throwaway container.

    Use as a context manager; ``qtest`` is the connected client.

    Args:
        client: Docker client.
        image: The debug image (``qtrace/qemu:10.2.2-debug``).
        device: The device's verify view (its pack's qtest setup and support).
        run_id: Value of the ``qtrace.run`` label (a new one by default).
    """

    def __init__(
        self,
        client: docker.DockerClient,
        image: str,
        device: VerifyDevice,
        run_id: str | None = None,
    ) -> None:
        self._client = client
        self.device = device
        self.image = image
        self.run_id = run_id or new_run_id()
        self._dir = Path(tempfile.mkdtemp(prefix="qtrace-qtest-"))
        self._container: LabelledContainer | None = None
        self._sockets: list[socket.socket] = []
        self._qmp: _Qmp | None = None
        self._qtest: QtestClient | None = None
        self.link: FrameLink | None = None

    def __repr__(self) -> str:
        return f"QemuQtest(image={self.image!r}, run={self.run_id!r})"

    @property
    def qtest(self) -> QtestClient:
        if self._qtest is None:
            raise LaunchFailure("the qtest session is not started")
        return self._qtest

    @property
    def side(self) -> QemuSide:
        """The qtest session as a differential-test side."""
        setup = self.device.qtest
        if setup is None:
            raise LaunchFailure(f"the {self.device.name} pack has no [model.qtest] setup")
        return QemuSide(
            self.qtest,
            setup.slot,
            setup.gsi,
            self.device.support.interrupt_delay_ns,
            dict(setup.bars) or DEFAULT_BARS,
            self.link,
        )

    def start(self) -> QtestClient:
        """Listen, start the container, accept QEMU's connections (qtest, QMP and, for a
        NIC, its network backend)."""
        netdev = self.device.qtest is not None and self.device.qtest.netdev
        names = (_QTEST_SOCK, _QMP_SOCK, *((_NET_SOCK,) if netdev else ()))
        listeners = [self._listen(name) for name in names]
        try:
            spec = ContainerSpec(
                image=self.image,
                run_id=self.run_id,
                mounts={str(self._dir): (_MOUNT, "rw")},
                kind=ContainerKind.VERIFY,
                command=tuple(qtest_argv(self.device)),
                stop_timeout_s=0,  # QEMU keeps no state worth a soft stop
            )
            self._container = LabelledContainer(self._client, spec).start()
            qtest_sock = self._accept(listeners[0])
            qmp_sock = self._accept(listeners[1])
            if netdev:
                self.link = FrameLink(self._accept(listeners[2]))
        finally:
            for listener in listeners:
                listener.close()
        self._qtest = QtestClient.over_socket(qtest_sock)
        self._qmp = _Qmp(qmp_sock.makefile("rwb", buffering=0))
        if self.device.qtest is not None:  # the device's line: e.g. an I/O APIC input
            self._qtest.irq_intercept_in(self.device.qtest.irq_intercept)
        logger.debug("qtest session up in %r", self._container)
        return self._qtest

    def system_reset(self) -> None:
        """Reset the whole machine (QMP ``system_reset``), returning once it is done."""
        if self._qmp is None:
            raise LaunchFailure("the QMP channel is not open")
        self._qmp.execute("system_reset", wait_event="RESET")

    def _listen(self, name: str) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self._dir / name))
        sock.listen(1)
        sock.settimeout(_CONNECT_TIMEOUT_S)
        return sock

    def _accept(self, listener: socket.socket) -> socket.socket:
        try:
            conn, _ = listener.accept()
        except TimeoutError as exc:
            raise LaunchFailure(
                "QEMU did not connect to the qtest/QMP socket", log_tail=self._log_tail()
            ) from exc
        conn.settimeout(_REPLY_TIMEOUT_S)
        self._sockets.append(conn)
        return conn

    def _log_tail(self, lines: int = 20) -> Sequence[str]:
        return self._container.logs(lines) if self._container is not None else ()

    def close(self) -> None:
        """Close the channels and remove the container; idempotent."""
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        self._qtest = self._qmp = None
        self.link = None
        container, self._container = self._container, None
        shutil.rmtree(self._dir, ignore_errors=True)
        if container is not None:
            container.close()  # raises AbnormalShutdown if the daemon will not remove it

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
