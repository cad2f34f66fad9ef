"""The ivshmem server stub against fake peers over socketpairs: the greeting in the order the
ivshmem specification gives (version, own ID, shared memory, other peers, own vectors), the
newcomer announced to the others, a departure announced without a descriptor."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator

import pytest

from qtrace.backends.ivshmem_server import IvshmemService, Peer, greeting

MESSAGE = struct.Struct("<q")
SHM_BYTES = 1 << 20


def _read(conn: socket.socket) -> tuple[int, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(conn, MESSAGE.size, 4)
    assert len(data) == MESSAGE.size
    return MESSAGE.unpack(data)[0], fds


def _pending(conn: socket.socket) -> list[tuple[int, list[int]]]:
    conn.setblocking(False)
    got = []
    try:
        while True:
            got.append(_read(conn))
    except BlockingIOError:
        pass
    finally:
        conn.setblocking(True)
    return got


class Peers:
    """Fake ivshmem-doorbell peers connected to one service."""

    def __init__(self, vectors: int) -> None:
        self.service = IvshmemService(SHM_BYTES, vectors)
        self.pairs: list[tuple[socket.socket, socket.socket]] = []

    def connect(self) -> socket.socket:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.pairs.append((mine, theirs))
        self.service.connected(theirs)
        return mine

    def hang_up(self, mine: socket.socket) -> None:
        theirs = next(t for m, t in self.pairs if m is mine)
        self.service.disconnected(theirs)
        theirs.close()
        mine.close()

    def close(self) -> None:
        for mine, theirs in self.pairs:
            if theirs.fileno() != -1:
                self.service.disconnected(theirs)
                theirs.close()
            mine.close()
        os.close(self.service.shm_fd)


@pytest.fixture
def peers() -> Iterator[Peers]:
    made = Peers(vectors=2)
    yield made
    made.close()


def test_the_greeting_is_ordered_as_the_specification_says() -> None:
    newcomer, other = Peer(3, (30, 31)), Peer(1, (10, 11))
    assert greeting(newcomer, 99, [other]) == [
        (0, ()),  # protocol version
        (3, ()),  # the peer's own ID
        (-1, (99,)),  # the shared memory
        (1, (10,)),  # the other peer, once per vector
        (1, (11,)),
        (3, (30,)),  # its own vectors
        (3, (31,)),
    ]


def test_a_peer_gets_memory_of_a_power_of_two_and_its_eventfds(peers: Peers) -> None:
    first = peers.connect()
    messages = _pending(first)
    assert [number for number, _ in messages] == [0, 0, -1, 0, 0]
    assert [len(fds) for _, fds in messages] == [0, 0, 1, 1, 1]
    shm = messages[2][1][0]
    assert os.fstat(shm).st_size == SHM_BYTES
    for _, fds in messages:
        for fd in fds:
            os.close(fd)


def test_peers_learn_of_each_other_coming_and_going(peers: Peers) -> None:
    first = peers.connect()
    for _, fds in _pending(first):
        for fd in fds:
            os.close(fd)
    second = peers.connect()
    to_second = _pending(second)
    assert [n for n, _ in to_second] == [0, 1, -1, 0, 0, 1, 1]  # first's vectors, then its own
    to_first = _pending(first)
    assert [(n, len(fds)) for n, fds in to_first] == [(1, 1), (1, 1)]  # the newcomer's vectors
    for _, fds in to_second + to_first:
        for fd in fds:
            os.close(fd)
    peers.hang_up(second)
    assert _pending(first) == [(1, [])]  # a departure: the ID without a descriptor


def test_shared_memory_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        IvshmemService(3 << 20, 1)
