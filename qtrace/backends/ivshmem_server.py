"""An ivshmem server stub: shared memory and interrupt eventfds for ivshmem-doorbell peers.

An ``ivshmem-doorbell`` device gets its shared memory (BAR 2) and its interrupt vectors from
a server on a unix socket, and QEMU waits for the server while it creates the device. This
stub follows the client-server protocol of QEMU's ``docs/specs/ivshmem-spec.rst``: the
connection is one-way, every message is one 8-byte little-endian signed number, some carry
one file descriptor. On connect a peer gets, in order, the protocol version (0), its own ID,
-1 with the shared memory's fd, one notification per other peer (that peer's ID once per
vector, each with the eventfd that interrupts it on that vector) and its own ID once per
vector with the eventfds it is interrupted through. The other peers are then told of the
newcomer the same way, and of a departure by its ID without a descriptor. The memory is a
memfd; nothing reads it or the eventfds.

Run as ``python3 -m qtrace_backends.ivshmem_server --socket PATH [--shm-bytes N]
[--vectors N]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from .unix_server import PeerGone, send_message, serve

__all__ = ["PROTOCOL_VERSION", "IvshmemService", "Peer", "encode", "greeting", "main"]

logger = logging.getLogger(__name__)

MESSAGE = struct.Struct("<q")
PROTOCOL_VERSION = 0
SHM_MESSAGE = -1
"""The number that comes with the shared memory's descriptor."""
MAX_PEER_ID = 65535
"""IDs fit the doorbell register's 16-bit peer field."""
DEFAULT_SHM_BYTES = 1 << 20
"""The shared memory: BAR 2 takes its size, which must be a power of two."""


def encode(number: int) -> bytes:
    return MESSAGE.pack(number)


@dataclass(frozen=True)
class Peer:
    """A connected peer: its ID and the eventfds that interrupt it, one per vector."""

    peer_id: int
    eventfds: tuple[int, ...]


def greeting(
    newcomer: Peer, shm_fd: int, others: Sequence[Peer]
) -> list[tuple[int, tuple[int, ...]]]:
    """The messages a new peer gets on connect, as ``(number, fds)`` in sending order. Pure."""
    messages: list[tuple[int, tuple[int, ...]]] = [
        (PROTOCOL_VERSION, ()),
        (newcomer.peer_id, ()),
        (SHM_MESSAGE, (shm_fd,)),
    ]
    for other in others:
        messages += [(other.peer_id, (fd,)) for fd in other.eventfds]
    messages += [(newcomer.peer_id, (fd,)) for fd in newcomer.eventfds]
    return messages


class IvshmemService:
    """The server's state: the shared memory, the peers and their eventfds."""

    def __init__(self, shm_bytes: int, vectors: int) -> None:
        if shm_bytes <= 0 or shm_bytes & (shm_bytes - 1):
            raise ValueError(f"the shared memory must be a power of two bytes, not {shm_bytes}")
        self.vectors = vectors
        self.shm_fd = os.memfd_create("qtrace-ivshmem", os.MFD_CLOEXEC)
        os.ftruncate(self.shm_fd, shm_bytes)
        self.peers: dict[int, Peer] = {}  # by connection fd
        self.conns: dict[int, socket.socket] = {}

    def _new_id(self) -> int:
        used = {peer.peer_id for peer in self.peers.values()}
        for candidate in range(MAX_PEER_ID + 1):
            if candidate not in used:
                return candidate
        raise PeerGone("no peer ID left")

    def connected(self, conn: socket.socket) -> None:
        peer = Peer(
            self._new_id(),
            tuple(os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(self.vectors)),
        )
        others = list(self.peers.values())
        self.peers[conn.fileno()] = peer
        self.conns[conn.fileno()] = conn
        for number, fds in greeting(peer, self.shm_fd, others):
            send_message(conn, encode(number), fds)
        logger.info("peer %d: greeted (%d vectors)", peer.peer_id, self.vectors)
        for key, other_conn in self.conns.items():
            if key != conn.fileno():
                for fd in peer.eventfds:
                    self._tell(other_conn, peer.peer_id, (fd,))

    def readable(self, conn: socket.socket) -> None:
        """Peers never send: data or a hang-up both end the connection."""
        data = conn.recv(64)
        raise PeerGone("the peer hung up" if not data else "the peer sent data (one-way protocol)")

    def disconnected(self, conn: socket.socket) -> None:
        peer = self.peers.pop(conn.fileno(), None)
        self.conns.pop(conn.fileno(), None)
        if peer is None:
            return
        for other_conn in self.conns.values():
            self._tell(other_conn, peer.peer_id, ())
        for fd in peer.eventfds:
            os.close(fd)

    def _tell(self, conn: socket.socket, number: int, fds: tuple[int, ...]) -> None:
        try:
            send_message(conn, encode(number), fds)
        except PeerGone as exc:  # that peer's own hang-up is handled when it is read
            logger.info("telling a peer about %d failed: %s", number, exc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qtrace_backends.ivshmem_server", description=__doc__)
    parser.add_argument("--socket", required=True, help="the unix socket to listen on")
    parser.add_argument("--shm-bytes", type=int, default=DEFAULT_SHM_BYTES)
    parser.add_argument("--vectors", type=int, default=1, help="eventfds per peer")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
    service = IvshmemService(args.shm_bytes, args.vectors)
    logger.info(
        "ivshmem server stub: %d bytes of shared memory, %d vectors per peer",
        args.shm_bytes,
        args.vectors,
    )
    serve(args.socket, service)
    return 0


if __name__ == "__main__":
    sys.exit(main())
