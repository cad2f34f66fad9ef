"""A vhost-user back-end stub: answers the front-end's control messages, serves no virtqueue.

A vhost-user device in QEMU (``vhost-user-blk-pci``, ``vhost-user-gpu-pci``, ...) is only the
front-end: QEMU keeps the PCI transport and the device's configuration handling, and hands
its virtqueues to a back-end process over a unix socket. Without a back-end the device does
not start. This stub is that process, written from the vhost-user protocol specification
(QEMU's ``docs/interop/vhost-user.rst``): it offers the virtio features and configuration
space it is told, answers every message that needs an answer (``GET_FEATURES``,
``GET_PROTOCOL_FEATURES``, ``GET_QUEUE_NUM``, ``GET_CONFIG``, ``GET_VRING_BASE``, and any
message flagged ``need_reply`` once ``REPLY_ACK`` is negotiated) and keeps the file
descriptors it is passed (memory regions, kick/call eventfds, the GPU socket) open, unused.
It never touches a ring: a request a guest places on a queue stays unanswered. Every message
is logged, so the capture's evidence shows the whole conversation.

Wire format (native byte order, x86 little-endian): a 12-byte header, ``request``, ``flags``
(bits 0-1 the version, 1; bit 2 reply; bit 3 need_reply), ``size``, then ``size`` bytes.

Run as ``python3 -m qtrace_backends.vhost_user --socket PATH [--features BITS] [--queues N]
[--config] [--config-field OFFSET:SIZE=VALUE ...]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from .unix_server import PeerGone, recv_exactly, send_message, serve

__all__ = [
    "CONFIG_SPACE_BYTES",
    "Device",
    "Message",
    "ProtocolFeature",
    "Request",
    "Session",
    "VhostUserService",
    "encode",
    "main",
    "parse_config_field",
    "read_message",
]

logger = logging.getLogger(__name__)

HEADER = struct.Struct("=III")
U64 = struct.Struct("=Q")
VRING_STATE = struct.Struct("=II")
CONFIG_HEADER = struct.Struct("=III")
VERSION = 0x1
FLAG_REPLY = 0x4
FLAG_NEED_REPLY = 0x8
F_PROTOCOL_FEATURES = 30
"""The virtio feature bit a back-end sets to say it speaks the protocol-feature extension."""
VRING_INDEX_MASK = 0xFF
CONFIG_SPACE_BYTES = 256
"""The largest virtio configuration space the protocol carries."""
MAX_PAYLOAD_BYTES = 65536
"""Far above any message's payload; a larger size means the stream is out of step."""
DEFAULT_QUEUES = 64
MEM_SLOTS = 8
"""Memory regions the stub takes (the protocol's baseline, had slots been negotiated)."""


class Request(IntEnum):
    """Front-end request codes (the specification's "Front-end message types")."""

    GET_FEATURES = 1
    SET_FEATURES = 2
    SET_OWNER = 3
    RESET_OWNER = 4
    SET_MEM_TABLE = 5
    SET_LOG_BASE = 6
    SET_LOG_FD = 7
    SET_VRING_NUM = 8
    SET_VRING_ADDR = 9
    SET_VRING_BASE = 10
    GET_VRING_BASE = 11
    SET_VRING_KICK = 12
    SET_VRING_CALL = 13
    SET_VRING_ERR = 14
    GET_PROTOCOL_FEATURES = 15
    SET_PROTOCOL_FEATURES = 16
    GET_QUEUE_NUM = 17
    SET_VRING_ENABLE = 18
    SEND_RARP = 19
    NET_SET_MTU = 20
    SET_BACKEND_REQ_FD = 21
    IOTLB_MSG = 22
    SET_VRING_ENDIAN = 23
    GET_CONFIG = 24
    SET_CONFIG = 25
    CREATE_CRYPTO_SESSION = 26
    CLOSE_CRYPTO_SESSION = 27
    POSTCOPY_ADVISE = 28
    POSTCOPY_LISTEN = 29
    POSTCOPY_END = 30
    GET_INFLIGHT_FD = 31
    SET_INFLIGHT_FD = 32
    GPU_SET_SOCKET = 33
    RESET_DEVICE = 34
    VRING_KICK = 35
    GET_MAX_MEM_SLOTS = 36
    ADD_MEM_REG = 37
    REM_MEM_REG = 38
    SET_STATUS = 39
    GET_STATUS = 40
    GET_SHARED_OBJECT = 41
    SET_DEVICE_STATE_FD = 42
    CHECK_DEVICE_STATE = 43


class ProtocolFeature(IntEnum):
    """The protocol-feature bits this stub may offer (``VHOST_USER_PROTOCOL_F_*``)."""

    MQ = 0
    REPLY_ACK = 3
    CONFIG = 9


_VRING_FILES = {Request.SET_VRING_KICK, Request.SET_VRING_CALL, Request.SET_VRING_ERR}
"""Messages whose u64 payload names a vring (bits 0-7) and pass that vring's eventfd."""


class ProtocolError(PeerGone):
    """The front-end sent something this stub cannot read: the connection is dropped (the
    specification lets either side close on a protocol error)."""


@dataclass(frozen=True)
class Message:
    """One message as read from the socket."""

    request: int
    flags: int
    payload: bytes
    fds: tuple[int, ...] = ()

    @property
    def need_reply(self) -> bool:
        return bool(self.flags & FLAG_NEED_REPLY)

    @property
    def name(self) -> str:
        try:
            return Request(self.request).name
        except ValueError:
            return f"request {self.request}"

    def u64(self) -> int:
        if len(self.payload) < U64.size:
            raise ProtocolError(f"{self.name}: a {len(self.payload)}-byte payload, not a u64")
        return int(U64.unpack_from(self.payload)[0])

    def vring_state(self) -> tuple[int, int]:
        if len(self.payload) < VRING_STATE.size:
            raise ProtocolError(f"{self.name}: a {len(self.payload)}-byte vring state")
        index, num = VRING_STATE.unpack_from(self.payload)
        return int(index), int(num)


def encode(request: int, payload: bytes = b"", flags: int = VERSION | FLAG_REPLY) -> bytes:
    """A whole message: header then payload (a reply by default)."""
    return HEADER.pack(request, flags, len(payload)) + payload


def read_message(conn: socket.socket) -> Message:
    """The next message on ``conn``, with the file descriptors that came with it.

    Raises:
        PeerGone: the front-end hung up (or sent a size no message has).
    """
    fds: list[int] = []
    request, flags, size = HEADER.unpack(recv_exactly(conn, HEADER.size, fds))
    if size > MAX_PAYLOAD_BYTES:
        for fd in fds:
            os.close(fd)
        raise ProtocolError(f"a {size}-byte payload for request {request}")
    payload = recv_exactly(conn, size, fds) if size else b""
    return Message(request, flags, payload, tuple(fds))


def parse_config_field(text: str) -> tuple[int, int, int]:
    """``OFFSET:SIZE=VALUE`` (a little-endian field of the configuration space) as a triple.

    Raises:
        ValueError: not of that form, or outside the configuration space.
    """
    place, eq, value = text.partition("=")
    offset, colon, size = place.partition(":")
    if not eq or not colon:
        raise ValueError(f"{text!r} is not OFFSET:SIZE=VALUE")
    triple = int(offset, 0), int(size, 0), int(value, 0)
    if triple[1] not in (1, 2, 4, 8) or not 0 <= triple[0] <= CONFIG_SPACE_BYTES - triple[1]:
        raise ValueError(f"{text!r}: a 1, 2, 4 or 8-byte field inside {CONFIG_SPACE_BYTES} bytes")
    return triple


@dataclass(frozen=True)
class Device:
    """What the stub says the device is.

    Attributes:
        features: the virtio feature bits offered (``VHOST_USER_F_PROTOCOL_FEATURES`` is
            always added).
        queues: the answer to ``GET_QUEUE_NUM``.
        config: the configuration space ``GET_CONFIG`` reads, or ``None`` to not offer
            ``VHOST_USER_PROTOCOL_F_CONFIG`` (a front-end that does not expect it warns).
    """

    features: int = 0
    queues: int = DEFAULT_QUEUES
    config: bytes | None = None

    @property
    def offered_features(self) -> int:
        return self.features | 1 << F_PROTOCOL_FEATURES

    @property
    def protocol_features(self) -> int:
        bits = 1 << ProtocolFeature.MQ | 1 << ProtocolFeature.REPLY_ACK
        return bits | (1 << ProtocolFeature.CONFIG if self.config is not None else 0)

    @classmethod
    def from_fields(
        cls, features: int, queues: int, config: bool, fields: Sequence[tuple[int, int, int]]
    ) -> Device:
        """A device whose configuration space holds ``fields`` (offset, size, value)."""
        if not config and not fields:
            return cls(features, queues, None)
        space = bytearray(CONFIG_SPACE_BYTES)
        for offset, size, value in fields:
            space[offset : offset + size] = value.to_bytes(size, "little")
        return cls(features, queues, bytes(space))


@dataclass
class Session:
    """One front-end's connection: what it negotiated and the descriptors it passed.

    :meth:`handle` is pure protocol (no socket), so tests drive it message by message.
    """

    device: Device
    acked_features: int = 0
    acked_protocol_features: int = 0
    status: int = 0
    vring_bases: dict[int, int] = field(default_factory=dict)
    config: bytearray = field(default_factory=bytearray)
    held_fds: dict[tuple[int, int], tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.config = bytearray(self.device.config or b"")

    @property
    def reply_ack(self) -> bool:
        return bool(self.acked_protocol_features & 1 << ProtocolFeature.REPLY_ACK)

    def handle(self, msg: Message) -> bytes | None:
        """Take one message; the bytes to send back, or ``None`` when it needs no answer.

        A message with its own reply gets it; any other one flagged ``need_reply`` gets the
        REPLY_ACK answer (u64 0: success) once that extension is negotiated.
        """
        self._hold(msg)
        answer = _ANSWERS.get(msg.request)
        if answer is not None:
            return encode(msg.request, answer(self, msg))
        record = _RECORDS.get(msg.request)
        if record is not None:
            record(self, msg)
        if msg.need_reply and self.reply_ack:
            return encode(msg.request, U64.pack(0))
        return None

    def _hold(self, msg: Message) -> None:
        """Keep the descriptors a message passes, closing those it replaces (a new memory
        table, a vring's new eventfd); nothing reads them."""
        if not msg.fds:
            return
        index = msg.u64() & VRING_INDEX_MASK if msg.request in _VRING_FILES else 0
        key = (msg.request, index)
        for fd in self.held_fds.pop(key, ()):
            os.close(fd)
        self.held_fds[key] = msg.fds

    def close(self) -> None:
        """Close every descriptor the front-end passed."""
        for fds in self.held_fds.values():
            for fd in fds:
                os.close(fd)
        self.held_fds.clear()

    # ----- answers (requests that always get a reply) -----

    def _features(self, _msg: Message) -> bytes:
        return U64.pack(self.device.offered_features)

    def _protocol_features(self, _msg: Message) -> bytes:
        return U64.pack(self.device.protocol_features)

    def _queue_num(self, _msg: Message) -> bytes:
        return U64.pack(self.device.queues)

    def _vring_base(self, msg: Message) -> bytes:
        """The ring stops; its base is what the front-end set (nothing was consumed)."""
        index, _ = msg.vring_state()
        return VRING_STATE.pack(index, self.vring_bases.get(index, 0))

    def _get_config(self, msg: Message) -> bytes:
        """The asked-for part of the configuration space; an empty payload (the protocol's
        error answer) when no space is offered or the range is outside it."""
        if len(msg.payload) < CONFIG_HEADER.size:
            raise ProtocolError(f"GET_CONFIG: a {len(msg.payload)}-byte payload")
        offset, size, flags = CONFIG_HEADER.unpack_from(msg.payload)
        if self.device.config is None or offset + size > len(self.config):
            return b""
        return CONFIG_HEADER.pack(offset, size, flags) + bytes(self.config[offset : offset + size])

    def _status(self, _msg: Message) -> bytes:
        return U64.pack(self.status)

    def _max_mem_slots(self, _msg: Message) -> bytes:
        return U64.pack(MEM_SLOTS)

    def _zero(self, _msg: Message) -> bytes:
        return U64.pack(0)

    # ----- records (requests that change what later answers say) -----

    def _set_features(self, msg: Message) -> None:
        self.acked_features = msg.u64()

    def _set_protocol_features(self, msg: Message) -> None:
        self.acked_protocol_features = msg.u64() & self.device.protocol_features

    def _set_vring_base(self, msg: Message) -> None:
        index, num = msg.vring_state()
        self.vring_bases[index] = num

    def _set_config(self, msg: Message) -> None:
        """The front-end writes a writable field (the guest wrote it): kept for later reads."""
        if len(msg.payload) < CONFIG_HEADER.size:
            raise ProtocolError(f"SET_CONFIG: a {len(msg.payload)}-byte payload")
        offset, size, _flags = CONFIG_HEADER.unpack_from(msg.payload)
        data = msg.payload[CONFIG_HEADER.size : CONFIG_HEADER.size + size]
        if self.device.config is not None and offset + len(data) <= len(self.config):
            self.config[offset : offset + len(data)] = data

    def _set_status(self, msg: Message) -> None:
        self.status = msg.u64()


_ANSWERS: dict[int, Callable[[Session, Message], bytes]] = {
    Request.GET_FEATURES: Session._features,
    Request.GET_PROTOCOL_FEATURES: Session._protocol_features,
    Request.GET_QUEUE_NUM: Session._queue_num,
    Request.GET_VRING_BASE: Session._vring_base,
    Request.GET_CONFIG: Session._get_config,
    Request.GET_STATUS: Session._status,
    Request.GET_MAX_MEM_SLOTS: Session._max_mem_slots,
    Request.IOTLB_MSG: Session._zero,
}
"""Requests whose reply the specification always asks for, and how each is answered."""

_RECORDS: dict[int, Callable[[Session, Message], None]] = {
    Request.SET_FEATURES: Session._set_features,
    Request.SET_PROTOCOL_FEATURES: Session._set_protocol_features,
    Request.SET_VRING_BASE: Session._set_vring_base,
    Request.SET_CONFIG: Session._set_config,
    Request.SET_STATUS: Session._set_status,
}
"""Requests that only change state; every other request is taken as it is."""


class VhostUserService:
    """The server's side of :class:`Session`: one per connection, each message logged."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.sessions: dict[int, Session] = {}

    def connected(self, conn: socket.socket) -> None:
        self.sessions[conn.fileno()] = Session(self.device)

    def readable(self, conn: socket.socket) -> None:
        msg = read_message(conn)
        reply = self.sessions[conn.fileno()].handle(msg)
        logger.info(
            "%s size %d fds %d%s%s",
            msg.name,
            len(msg.payload),
            len(msg.fds),
            " need_reply" if msg.need_reply else "",
            f" -> reply {len(reply) - HEADER.size} bytes" if reply is not None else "",
        )
        if reply is not None:
            send_message(conn, reply)

    def disconnected(self, conn: socket.socket) -> None:
        session = self.sessions.pop(conn.fileno(), None)
        if session is not None:
            session.close()


def _bits(text: str) -> int:
    """``"28,29,32"`` as a feature mask."""
    return sum(1 << int(bit) for bit in text.split(",") if bit.strip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qtrace_backends.vhost_user", description=__doc__)
    parser.add_argument("--socket", required=True, help="the unix socket to listen on")
    parser.add_argument(
        "--features", action="append", default=[], help="virtio feature bits offered: 0,28,32"
    )
    parser.add_argument("--queues", type=int, default=DEFAULT_QUEUES, help="GET_QUEUE_NUM")
    parser.add_argument("--config", action="store_true", help="offer a configuration space")
    parser.add_argument(
        "--config-field",
        action="append",
        default=[],
        type=parse_config_field,
        help="OFFSET:SIZE=VALUE of the configuration space (implies --config)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
    features = 0
    for text in args.features:
        features |= _bits(text)
    device = Device.from_fields(features, args.queues, args.config, args.config_field)
    logger.info(
        "vhost-user stub: features %#x, protocol features %#x, %d queues, config %s; "
        "virtqueues are not processed",
        device.offered_features,
        device.protocol_features,
        device.queues,
        "offered" if device.config is not None else "not offered",
    )
    serve(args.socket, VhostUserService(device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
