"""The network backend stub against a fake QEMU over a socketpair: the numbered test frames
once the guest has transmitted, framed as QEMU's stream netdev frames them (4-byte
big-endian length), an ARP request answered as RFC 826 has it, other frames only logged."""

from __future__ import annotations

import io
import json
import socket
import struct

from qtrace.backends.net_frames import FRAME_BYTES, HOST_MAC, NetFrames, arp_reply, numbered_frame

NIC = bytes.fromhex("525400123456")


def _frames(data: bytes) -> list[bytes]:
    out = []
    while data:
        (length,) = struct.unpack(">I", data[:4])
        out.append(data[4 : 4 + length])
        data = data[4 + length :]
    return out


def _drain(conn: socket.socket) -> bytes:
    conn.setblocking(False)
    data = b""
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except BlockingIOError:
        pass
    return data


def test_the_guests_first_frame_brings_the_numbered_frames() -> None:
    log = io.StringIO()
    qemu, stub = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    service = NetFrames(18, NIC, log)
    service.connected(stub)
    assert _drain(qemu) == b""  # nothing before the guest transmits (its receiver is on)
    guest = numbered_frame(1, b"\xff" * 6)
    qemu.sendall(struct.pack(">I", len(guest)) + guest)
    service.readable(stub)
    qemu.sendall(struct.pack(">I", len(guest)) + guest)
    service.readable(stub)  # once only
    frames = _frames(_drain(qemu))
    assert [len(f) for f in frames] == [FRAME_BYTES[i % len(FRAME_BYTES)] for i in range(18)]
    assert frames[0][:6] == NIC and frames[1][:6] == b"\xff" * 6  # unicast, broadcast
    assert frames[3][6:12] == HOST_MAC and frames[3][12:14] == b"\x88\xb5"
    assert frames[3][14:25] == b"qtrace rx 3"
    assert frames == [numbered_frame(i, NIC) for i in range(18)]
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    assert lines[0]["dir"] == "from-guest"
    assert lines[1] == {"dir": "to-guest", "bytes": 60, "data": frames[0].hex()}


def _arp_request(sender_ip: bytes, target_ip: bytes) -> bytes:
    arp = bytes.fromhex("0001080006040001") + NIC + sender_ip + bytes(6) + target_ip
    return b"\xff" * 6 + NIC + b"\x08\x06" + arp


def test_an_arp_request_is_answered_from_the_made_up_host() -> None:
    request = _arp_request(bytes([169, 254, 77, 1]), bytes([169, 254, 1, 1]))
    reply = arp_reply(request)
    assert reply is not None and len(reply) == 60
    assert reply[:6] == NIC and reply[6:12] == HOST_MAC and reply[12:14] == b"\x08\x06"
    assert reply[14:22] == bytes.fromhex("0001080006040002")  # a reply
    assert reply[22:28] == HOST_MAC and reply[28:32] == bytes([169, 254, 1, 1])
    assert reply[32:38] == NIC and reply[38:42] == bytes([169, 254, 77, 1])
    assert arp_reply(reply) is None and arp_reply(numbered_frame(0, NIC)) is None


def test_frames_from_the_guest_are_logged_and_arp_answered_in_order() -> None:
    log = io.StringIO()
    qemu, stub = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    service = NetFrames(0, NIC, log)  # no numbered frames
    service.connected(stub)
    request = _arp_request(bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1]))
    other = numbered_frame(5, NIC)
    wire = b"".join(struct.pack(">I", len(f)) + f for f in (other, request))
    qemu.sendall(wire[:7])  # a frame split over reads is put back together
    service.readable(stub)
    qemu.sendall(wire[7:])
    service.readable(stub)
    assert _frames(_drain(qemu)) == [arp_reply(request)]
    dirs = [json.loads(line)["dir"] for line in log.getvalue().splitlines()]
    assert dirs == ["from-guest", "from-guest", "to-guest"]
