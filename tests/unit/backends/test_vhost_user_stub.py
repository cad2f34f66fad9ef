"""The vhost-user stub against a fake front-end over a socketpair: the handshake QEMU 10.2.2
makes for vhost-user-blk-pci (as the stub logged it in a real capture), the answers, REPLY_ACK,
the configuration space, the descriptors it keeps and closes; and the real program, started
as a capture starts it, ready when its socket appears and gone on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtrace.backends.vhost_user import (
    Device,
    Message,
    ProtocolFeature,
    Request,
    Session,
    VhostUserService,
    encode,
    parse_config_field,
)

REPO = Path(__file__).resolve().parents[3]
HEADER = struct.Struct("=III")
U64 = struct.Struct("=Q")
NEED_REPLY = 0x8
VERSION = 0x1
BLK = Device.from_fields((1 << 6) | (1 << 9) | (1 << 32), 64, False, [(0, 8, 2048), (20, 4, 512)])


class FakeFrontEnd:
    """The front-end's end of a socketpair; the stub's service reads the other end."""

    def __init__(self, service: VhostUserService) -> None:
        self.mine, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.theirs.settimeout(2)
        self.mine.settimeout(2)
        self.service = service
        service.connected(self.theirs)

    @property
    def session(self) -> Session:
        return self.service.sessions[self.theirs.fileno()]

    def send(
        self,
        request: Request,
        payload: bytes = b"",
        *,
        need_reply: bool = False,
        fds: list[int] | None = None,
    ) -> bytes | None:
        """Send one request, let the stub take it, return the reply's payload (None: none)."""
        data = encode(request, payload, VERSION | (NEED_REPLY if need_reply else 0))
        if fds:
            socket.send_fds(self.mine, [data], fds)
        else:
            self.mine.sendall(data)
        self.service.readable(self.theirs)
        self.mine.setblocking(False)
        try:
            header = self.mine.recv(HEADER.size)
        except BlockingIOError:
            return None
        finally:
            self.mine.settimeout(2)
        code, flags, size = HEADER.unpack(header)
        assert code == request and flags == VERSION | 0x4, (code, flags)
        return self.mine.recv(size) if size else b""

    def close(self) -> None:
        self.service.disconnected(self.theirs)
        self.mine.close()
        self.theirs.close()


@pytest.fixture
def front() -> Iterator[FakeFrontEnd]:
    fake = FakeFrontEnd(VhostUserService(BLK))
    yield fake
    fake.close()


def _u64(payload: bytes | None) -> int:
    assert payload is not None
    return int(U64.unpack(payload)[0])


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_the_handshake_of_a_block_front_end_is_answered(front: FakeFrontEnd) -> None:
    features = _u64(front.send(Request.GET_FEATURES))
    assert features & (1 << 30), "VHOST_USER_F_PROTOCOL_FEATURES is always offered"
    assert features & (1 << 32) and features & (1 << 6) and features & (1 << 9)
    protocol = _u64(front.send(Request.GET_PROTOCOL_FEATURES))
    wanted = {ProtocolFeature.MQ, ProtocolFeature.REPLY_ACK, ProtocolFeature.CONFIG}
    assert protocol == sum(1 << bit for bit in wanted)
    assert front.send(Request.SET_PROTOCOL_FEATURES, U64.pack(protocol)) is None
    assert _u64(front.send(Request.GET_QUEUE_NUM)) == 64
    assert front.send(Request.SET_OWNER) is None
    assert front.send(Request.SET_FEATURES, U64.pack(features)) is None
    assert front.session.acked_features == features


def test_need_reply_is_acked_only_once_reply_ack_is_negotiated(front: FakeFrontEnd) -> None:
    assert front.send(Request.SET_OWNER, need_reply=True) is None  # not negotiated yet
    front.send(Request.SET_PROTOCOL_FEATURES, U64.pack(1 << ProtocolFeature.REPLY_ACK))
    assert _u64(front.send(Request.SET_OWNER, need_reply=True)) == 0
    # a request with its own reply gets that reply, not an extra ack
    assert _u64(front.send(Request.GET_QUEUE_NUM, need_reply=True)) == 64
    assert front.send(Request.SET_OWNER) is None


def test_the_configuration_space_holds_the_fields_it_was_given(front: FakeFrontEnd) -> None:
    reply = front.send(Request.GET_CONFIG, struct.pack("=III", 0, 60, 0) + bytes(60))
    assert reply is not None and len(reply) == 12 + 60  # the size asked for, exactly
    offset, size, _ = struct.unpack_from("=III", reply)
    data = reply[12:]
    assert (offset, size) == (0, 60)
    assert int.from_bytes(data[0:8], "little") == 2048  # capacity, 512-byte sectors
    assert int.from_bytes(data[20:24], "little") == 512  # blk_size
    front.send(Request.SET_CONFIG, struct.pack("=III", 32, 1, 0) + b"\x01")
    reply = front.send(Request.GET_CONFIG, struct.pack("=III", 32, 1, 0) + b"\0")
    assert reply is not None and reply[12:] == b"\x01"
    # outside the space: the protocol's error answer, an empty payload
    assert front.send(Request.GET_CONFIG, struct.pack("=III", 250, 16, 0)) == b""


def test_no_configuration_space_answers_get_config_with_an_error() -> None:
    fake = FakeFrontEnd(VhostUserService(Device(1 << 32)))
    try:
        protocol = _u64(fake.send(Request.GET_PROTOCOL_FEATURES))
        assert not protocol & (1 << ProtocolFeature.CONFIG)
        assert fake.send(Request.GET_CONFIG, struct.pack("=III", 0, 8, 0)) == b""
    finally:
        fake.close()


def test_a_stopped_ring_reports_the_base_it_was_given(front: FakeFrontEnd) -> None:
    front.send(Request.SET_VRING_NUM, struct.pack("=II", 0, 128))
    front.send(Request.SET_VRING_BASE, struct.pack("=II", 0, 7))
    assert front.send(Request.GET_VRING_BASE, struct.pack("=II", 0, 0)) == struct.pack("=II", 0, 7)
    assert front.send(Request.GET_VRING_BASE, struct.pack("=II", 3, 0)) == struct.pack("=II", 3, 0)


def test_descriptors_are_kept_replaced_per_ring_and_closed_with_the_session(
    front: FakeFrontEnd,
) -> None:
    first, second, other = (os.eventfd(0) for _ in range(3))
    memory = os.memfd_create("guest-ram")
    try:
        front.send(Request.SET_MEM_TABLE, struct.pack("=II", 1, 0) + bytes(32), fds=[memory])
        front.send(Request.SET_VRING_CALL, U64.pack(0), fds=[first])
        front.send(Request.SET_VRING_CALL, U64.pack(1), fds=[other])
        kept = dict(front.session.held_fds)
        assert set(kept) == {
            (Request.SET_MEM_TABLE, 0),
            (Request.SET_VRING_CALL, 0),
            (Request.SET_VRING_CALL, 1),
        }
        ring0 = kept[(Request.SET_VRING_CALL, 0)][0]
        assert _is_open(ring0)
        front.send(Request.SET_VRING_CALL, U64.pack(0), fds=[second])  # ring 0's new eventfd
        assert not _is_open(ring0), "the replaced descriptor is closed"
        held = [fd for fds in front.session.held_fds.values() for fd in fds]
        front.send(Request.GPU_SET_SOCKET, fds=[os.dup(first)])
        held += list(front.session.held_fds[(Request.GPU_SET_SOCKET, 0)])
        assert all(_is_open(fd) for fd in held)
        front.close()
        assert not any(_is_open(fd) for fd in held), "a hang-up closes what it passed"
    finally:
        for fd in (first, second, other, memory):
            os.close(fd)


def test_a_session_handles_messages_without_a_socket() -> None:
    session = Session(BLK)
    reply = session.handle(Message(Request.GET_FEATURES, VERSION, b""))
    assert reply is not None and HEADER.unpack_from(reply)[0] == Request.GET_FEATURES
    assert session.handle(Message(99, VERSION, b"")) is None  # an unknown request is taken


@pytest.mark.parametrize(
    ("text", "field"), [("0:8=2048", (0, 8, 2048)), ("0x14:4=0x200", (20, 4, 512))]
)
def test_config_fields_parse(text: str, field: tuple[int, int, int]) -> None:
    assert parse_config_field(text) == field


@pytest.mark.parametrize("text", ["0:3=1", "255:2=1", "8=1", "0:8"])
def test_a_bad_config_field_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_config_field(text)


def test_the_program_is_ready_when_its_socket_exists_and_ends_on_sigterm(tmp_path: Path) -> None:
    """As the capture runs it: ``python3 -m <package>.vhost_user``; a front-end that connects
    the moment the socket exists is served; SIGTERM ends it with status 0, socket removed."""
    path = tmp_path / "vu.sock"
    log = tmp_path / "stub.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qtrace.backends.vhost_user", "--socket", str(path), "--config"],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # A readiness wait, not a timing: a loaded machine (CI's 2 cores running QEMU)
        # took more than 5 s to start the interpreter and import the package.
        deadline = time.monotonic() + 60
        while not path.is_socket() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.025)
        assert path.is_socket(), log.read_text()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(5)
            conn.connect(str(path))
            conn.sendall(encode(Request.GET_FEATURES, b"", VERSION))
            code, _flags, size = HEADER.unpack(conn.recv(HEADER.size))
            assert code == Request.GET_FEATURES and size == 8
            assert U64.unpack(conn.recv(8))[0] & (1 << 30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not path.exists()
    text = log.read_text()
    assert "GET_FEATURES" in text and "stopped (SIGTERM)" in text
