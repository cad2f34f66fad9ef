"""A network backend stub: the other end of a NIC's ``-netdev stream`` on a unix socket.

A NIC under capture gets ``-netdev stream,server=off,addr.type=unix`` whose peer is this
process, so no frame goes anywhere near an IP network (captures run with ``--network
none``; nothing here opens anything but the one unix socket). QEMU's stream netdev frames
every packet with its length, 4 bytes big-endian, in both directions. When the guest's
first frame arrives the stub sends ``--frames N`` numbered test frames to the NIC (for the
probe guest's receive part; not earlier, since QEMU 10.2.2 drops frames that wait while
the receiver is off, and a guest that transmits has it on), and it answers what the guest
sends: an ARP request gets a reply from a made-up host (so a Linux driver receives frames
too); everything else is only logged. Each frame in either direction is one line of
``--log`` (JSON: direction, length, hex).

The test frames: frame ``i`` goes to the NIC's address (``--mac``) when ``i`` is even and to
broadcast when odd, from the made-up host, ethertype 0x88B5 (IEEE local experimental), its
payload ``qtrace rx <i>`` then the bytes ``i, i+1, ...``; their lengths (no CRC) cycle
through :data:`FRAME_BYTES`, chosen so that a 256-byte receive buffer takes some whole and
others in two to six descriptors (the CRC counts in the length).

Run as ``python3 -m qtrace_backends.net_frames --socket PATH [--frames N] [--mac MAC]
[--log FILE]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import struct
import sys
from collections.abc import Sequence
from typing import TextIO

from .unix_server import PeerGone, send_message, serve

__all__ = ["FRAME_BYTES", "HOST_MAC", "NetFrames", "arp_reply", "main", "numbered_frame"]

logger = logging.getLogger(__name__)

LENGTH = struct.Struct(">I")
FRAME_BYTES = (60, 64, 100, 251, 252, 253, 300, 508, 509, 600, 1000, 1514, 42, 128, 256, 777)
"""Test frame lengths without CRC: 252 + 4 fills one 256-byte buffer, 253 needs two, 1514
(the largest untagged Ethernet frame) six; 42 is shorter than Ethernet's 60-byte minimum."""
HOST_MAC = bytes.fromhex("025174726365")  # locally administered: "\x02Qtrce"
DEFAULT_NIC_MAC = "52:54:00:12:34:56"  # QEMU's default NIC address
ETHERTYPE_TEST = 0x88B5
ETHERTYPE_ARP = 0x0806
_BROADCAST = b"\xff" * 6
_MAX_FRAME_BYTES = 65536


def numbered_frame(index: int, nic_mac: bytes) -> bytes:
    """Test frame ``index`` (see the module docstring)."""
    length = FRAME_BYTES[index % len(FRAME_BYTES)]
    dst = nic_mac if index % 2 == 0 else _BROADCAST
    head = dst + HOST_MAC + ETHERTYPE_TEST.to_bytes(2, "big") + f"qtrace rx {index}".encode()
    tail = bytes((index + k) & 0xFF for k in range(max(0, length - len(head))))
    return (head + tail)[:length]


def arp_reply(frame: bytes) -> bytes | None:
    """The reply to ``frame`` if it is an Ethernet/IPv4 ARP request, from :data:`HOST_MAC`
    claiming the address asked for (RFC 826); else ``None``."""
    if len(frame) < 42 or int.from_bytes(frame[12:14], "big") != ETHERTYPE_ARP:
        return None
    arp = frame[14:42]
    if arp[0:8] != bytes.fromhex("0001080006040001"):  # Ethernet, IPv4, 6, 4, request
        return None
    sender_mac, sender_ip, target_ip = arp[8:14], arp[14:18], arp[24:28]
    body = bytes.fromhex("0001080006040002") + HOST_MAC + target_ip + sender_mac + sender_ip
    return sender_mac + HOST_MAC + ETHERTYPE_ARP.to_bytes(2, "big") + body + bytes(18)


class NetFrames:
    """The service: test frames after the guest's first, ARP replies, a log of every frame."""

    def __init__(self, frames: int, nic_mac: bytes, log: TextIO | None) -> None:
        self.frames = frames
        self.nic_mac = nic_mac
        self.log = log
        self._pending: dict[int, bytearray] = {}
        self._sent: set[int] = set()

    def _record(self, direction: str, frame: bytes) -> None:
        if self.log is not None:
            line = {"dir": direction, "bytes": len(frame), "data": frame.hex()}
            self.log.write(json.dumps(line) + "\n")
            self.log.flush()

    def _send(self, conn: socket.socket, frame: bytes) -> None:
        send_message(conn, LENGTH.pack(len(frame)) + frame)
        self._record("to-guest", frame)

    def connected(self, conn: socket.socket) -> None:
        self._pending[conn.fileno()] = bytearray()

    def _send_numbered(self, conn: socket.socket) -> None:
        if conn.fileno() in self._sent:
            return
        self._sent.add(conn.fileno())
        for index in range(self.frames):
            self._send(conn, numbered_frame(index, self.nic_mac))
        logger.info("the guest transmitted: sent %d test frames", self.frames)

    def readable(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(_MAX_FRAME_BYTES)
        except (TimeoutError, ConnectionError) as exc:
            raise PeerGone(f"reading: {exc}") from exc
        if not data:
            raise PeerGone("QEMU closed the netdev")
        buffer = self._pending.setdefault(conn.fileno(), bytearray())
        buffer += data
        while len(buffer) >= LENGTH.size:
            (length,) = LENGTH.unpack_from(buffer)
            if len(buffer) < LENGTH.size + length:
                break
            frame = bytes(buffer[LENGTH.size : LENGTH.size + length])
            del buffer[: LENGTH.size + length]
            self._record("from-guest", frame)
            self._send_numbered(conn)
            reply = arp_reply(frame)
            if reply is not None:
                self._send(conn, reply)
                logger.info("answered an ARP request for %s", socket.inet_ntoa(frame[38:42]))

    def disconnected(self, conn: socket.socket) -> None:
        self._pending.pop(conn.fileno(), None)
        self._sent.discard(conn.fileno())


def _mac(text: str) -> bytes:
    raw = bytes.fromhex(text.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise argparse.ArgumentTypeError(f"{text!r} is not a MAC address")
    return raw


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qtrace_backends.net_frames", description=__doc__)
    parser.add_argument("--socket", required=True, help="the unix socket to listen on")
    parser.add_argument(
        "--frames", type=int, default=0, help="test frames sent after the guest's first frame"
    )
    parser.add_argument("--mac", type=_mac, default=_mac(DEFAULT_NIC_MAC), help="the NIC's MAC")
    parser.add_argument("--log", help="append every frame, as JSON lines, to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
    log = open(args.log, "a", encoding="utf-8") if args.log else None  # noqa: SIM115
    try:
        logger.info("net frames stub: %d test frames for %s", args.frames, args.mac.hex(":"))
        serve(args.socket, NetFrames(args.frames, args.mac, log))
    finally:
        if log is not None:
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
