"""The part every stub backend shares: a unix-socket server, fd passing, a clean stop.

Readiness is the socket's path: the server binds and listens on a temporary name and renames
it into place, so the moment the path exists a connect succeeds (the capture waits for it
before starting QEMU, whose client chardev fails at once on a missing socket). SIGTERM and
SIGINT end the loop; the socket is unlinked on the way out. One thread and one selector: the
front-ends this serves send small messages and wait for each answer.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
from collections.abc import Sequence
from types import FrameType
from typing import Protocol

__all__ = ["MAX_FDS", "PeerGone", "Service", "recv_exactly", "send_message", "serve"]

logger = logging.getLogger(__name__)

MAX_FDS = 64
"""File descriptors accepted with one read (vhost-user passes at most 8 per message)."""
PEER_TIMEOUT_S = 10.0
"""How long a peer may take to send the rest of a message it started."""
POLL_S = 0.5


class PeerGone(Exception):
    """The peer closed its end (or broke the protocol): its connection is closed."""


class Service(Protocol):
    """What a stub does with its connections (the server owns the sockets)."""

    def connected(self, conn: socket.socket) -> None:
        """A peer connected (an ivshmem server sends its greeting here)."""

    def readable(self, conn: socket.socket) -> None:
        """``conn`` has data: read and answer one message. Raises :class:`PeerGone` to have
        the connection closed."""

    def disconnected(self, conn: socket.socket) -> None:
        """The connection is about to be closed (forget the peer, close what it passed)."""


def recv_exactly(conn: socket.socket, size: int, fds: list[int]) -> bytes:
    """``size`` bytes from ``conn``, appending any file descriptors that came with them to
    ``fds`` (they may ride on any part of a message).

    Raises:
        PeerGone: the peer closed the connection first.
    """
    data = bytearray()
    while len(data) < size:
        try:
            chunk, new_fds, _flags, _addr = socket.recv_fds(conn, size - len(data), MAX_FDS)
        except (TimeoutError, ConnectionError) as exc:
            raise PeerGone(f"reading: {exc}") from exc
        fds.extend(new_fds)
        if not chunk:
            raise PeerGone("the peer closed the connection")
        data += chunk
    return bytes(data)


def send_message(conn: socket.socket, data: bytes, fds: Sequence[int] = ()) -> None:
    """One message, with ``fds`` in its ancillary data (SCM_RIGHTS)."""
    try:
        if fds:
            sent = socket.send_fds(conn, [data], list(fds))
            if sent < len(data):
                conn.sendall(data[sent:])
        else:
            conn.sendall(data)
    except (TimeoutError, ConnectionError) as exc:
        raise PeerGone(f"writing: {exc}") from exc


def _listen(path: str) -> socket.socket:
    """Listen on ``path``: bound under a temporary name, renamed into place when ready."""
    staging = f"{path}.{os.getpid()}.tmp"
    for stale in (path, staging):
        try:
            os.unlink(stale)
        except FileNotFoundError:
            pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(staging)
    server.listen(8)
    os.rename(staging, path)
    return server


def serve(path: str, service: Service) -> str:
    """Serve ``service`` on the unix socket ``path`` until SIGTERM or SIGINT.

    The signal handler only notes the signal and wakes the selector (through a pipe the
    selector watches): raising from it, as this did first, could land inside ``logging``,
    which swallows any exception of a handler's ``emit``, and the server then ran on after
    SIGTERM (seen under load, in the stub's SIGTERM test).

    Returns:
        Why it stopped (the signal's name).
    """
    stopped: list[str] = []
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        stopped.append(signal.Signals(signum).name)
        try:
            os.write(wake_write, b"\0")
        except OSError:  # the pipe is full: the selector is awake already
            pass

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = _listen(path)
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    peers: list[socket.socket] = []
    logger.info("listening on %s", path)
    try:
        while not stopped:
            for key, _events in selector.select(POLL_S):
                if stopped or key.fileobj == wake_read:
                    break
                if key.fileobj is server:
                    conn, _ = server.accept()
                    conn.settimeout(PEER_TIMEOUT_S)
                    peers.append(conn)
                    logger.info("peer %d connected", conn.fileno())
                    selector.register(conn, selectors.EVENT_READ)
                    try:
                        service.connected(conn)
                    except PeerGone as exc:
                        _close(selector, peers, conn, service, str(exc))
                    continue
                conn = key.fileobj  # type: ignore[assignment]
                try:
                    service.readable(conn)
                except PeerGone as exc:
                    _close(selector, peers, conn, service, str(exc))
    finally:
        while peers:  # _close removes each from the list
            _close(selector, peers, peers[0], service, "the server stops")
        selector.close()
        server.close()
        os.close(wake_read)
        os.close(wake_write)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    why = stopped[0]
    logger.info("stopped (%s)", why)
    return why


def _close(
    selector: selectors.BaseSelector,
    peers: list[socket.socket],
    conn: socket.socket,
    service: Service,
    why: str,
) -> None:
    logger.info("peer %d closed: %s", conn.fileno(), why)
    service.disconnected(conn)
    selector.unregister(conn)
    peers.remove(conn)
    conn.close()
