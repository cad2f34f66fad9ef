"""A small typed client for QEMU's qtest protocol (``-qtest``, ``-accel qtest``).

Why: qtest lets a test be the guest CPU. Every command is one text line; QEMU answers
``OK [value]`` or ``FAIL reason`` on one line, and may interleave asynchronous lines
(``IRQ raise N`` / ``IRQ lower N`` after ``irq_intercept_in``) before the answer. The
client keeps the level of every intercepted line as those lines arrive, so a caller can
ask "is GSI 10 up?" after any command without another round trip.

The client works on any pair of byte streams (a unix socket here, a pipe in a test
double): only :meth:`QtestClient._send` and :meth:`QtestClient._recv_line` touch them.
"""

from __future__ import annotations

import logging
import socket
from typing import Protocol

from qtrace.errors import QtraceError

__all__ = ["ByteStream", "QtestClient", "QtestError"]

logger = logging.getLogger(__name__)

_SUFFIX = {1: "b", 2: "w", 4: "l", 8: "q"}


class ByteStream(Protocol):
    """A bidirectional byte stream read by lines (a socket file, a pipe pair in tests)."""

    def readline(self) -> bytes: ...

    def write(self, data: bytes, /) -> int | None: ...


class _SocketLines:
    """A socket as a :class:`ByteStream`: buffered line reads, whole unbuffered writes."""

    def __init__(self, sock: socket.socket) -> None:
        self._reader = sock.makefile("rb")
        self._sock = sock

    def readline(self) -> bytes:
        return self._reader.readline()

    def write(self, data: bytes, /) -> int | None:
        # All of it: a raw socket file's write is one send(), which takes only what the
        # socket buffer has room for (a 128 KiB RAM write is a 256 KiB command line).
        self._sock.sendall(data)
        return len(data)


class QtestError(QtraceError):
    """QEMU answered a qtest command with ``FAIL``, or the channel closed.

    Attributes:
        command: The command line sent.
        reply: What QEMU answered (empty when the channel closed).
    """

    def __init__(self, command: str, reply: str) -> None:
        self.command = command
        self.reply = reply
        what = f"answered {reply!r}" if reply else "closed the qtest channel"
        super().__init__(f"QEMU {what} to qtest command {command!r}")


class QtestClient:
    """One qtest session.

    Args:
        stream: A readable and writable binary file object (e.g. ``sock.makefile("rwb")``).

    Attributes:
        irq_levels: Level of every intercepted interrupt line seen so far, by number.
        commands_sent: How many commands went out (for statistics).
    """

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self.irq_levels: dict[int, bool] = {}
        self.commands_sent = 0

    @classmethod
    def over_socket(cls, sock: socket.socket) -> QtestClient:
        """A client on a connected socket (the socket stays owned by the caller).

        Reads are buffered: an unbuffered socket file reads a line one byte per system call,
        which made a 128-byte ``read`` answer (259 characters) cost a millisecond. Writes
        are not, so every command leaves at once.
        """
        return cls(_SocketLines(sock))

    # -- the wire ---------------------------------------------------------------------------

    def _send(self, line: str) -> None:
        self._stream.write(line.encode() + b"\n")

    def _recv_line(self) -> str:
        return self._stream.readline().decode(errors="replace").rstrip("\r\n")

    def command(self, line: str) -> str:
        """Send one command; return what follows ``OK`` (may be empty).

        Raises:
            QtestError: QEMU failed the command or closed the channel.
        """
        self._send(line)
        self.commands_sent += 1
        while True:
            reply = self._recv_line()
            if reply.startswith("IRQ "):
                self._note_irq(reply)
                continue
            if reply == "OK" or reply.startswith("OK "):
                return reply[3:]
            raise QtestError(line, reply)

    def _note_irq(self, reply: str) -> None:
        parts = reply.split()
        if len(parts) == 3 and parts[1] in ("raise", "lower"):
            self.irq_levels[int(parts[2])] = parts[1] == "raise"
        else:
            logger.debug("unexpected qtest line %r", reply)

    # -- typed commands -------------------------------------------------------------------

    def out(self, port: int, size: int, value: int) -> None:
        """``outb``/``outw``/``outl``: a port write of ``size`` bytes."""
        self.command(f"out{_SUFFIX[size]} {port:#x} {value:#x}")

    def in_(self, port: int, size: int) -> int:
        """``inb``/``inw``/``inl``: a port read of ``size`` bytes."""
        return int(self.command(f"in{_SUFFIX[size]} {port:#x}"), 16)

    def outl(self, port: int, value: int) -> None:
        self.out(port, 4, value)

    def inl(self, port: int) -> int:
        return self.in_(port, 4)

    def mem_write(self, addr: int, size: int, value: int) -> None:
        """``writeb``..``writeq``: a CPU store of ``size`` bytes (an MMIO access when mapped)."""
        self.command(f"write{_SUFFIX[size]} {addr:#x} {value:#x}")

    def mem_read(self, addr: int, size: int) -> int:
        """``readb``..``readq``: a CPU load of ``size`` bytes."""
        return int(self.command(f"read{_SUFFIX[size]} {addr:#x}"), 16)

    def writel(self, addr: int, value: int) -> None:
        self.mem_write(addr, 4, value)

    def readl(self, addr: int) -> int:
        return self.mem_read(addr, 4)

    def write(self, addr: int, data: bytes) -> None:
        """``write ADDR SIZE 0xHEX``: store a block of guest memory."""
        if data:
            self.command(f"write {addr:#x} {len(data):#x} 0x{data.hex()}")

    def read(self, addr: int, size_bytes: int) -> bytes:
        """``read ADDR SIZE``: fetch a block of guest memory."""
        if not size_bytes:
            return b""
        text = self.command(f"read {addr:#x} {size_bytes:#x}")
        return bytes.fromhex(text.removeprefix("0x"))

    def irq_intercept_in(self, qom_path: str) -> None:
        """Report the inputs of the device at ``qom_path`` as ``IRQ raise/lower N``."""
        self.command(f"irq_intercept_in {qom_path}")

    def clock_step(self, ns: int | None = None) -> int:
        """Advance the virtual clock (to the next timer when ``ns`` is None); return now."""
        reply = self.command("clock_step" if ns is None else f"clock_step {ns}")
        return int(reply or "0")

    def irq_level(self, line: int) -> bool:
        """Level of intercepted line ``line`` as of the last answer QEMU gave."""
        return self.irq_levels.get(line, False)
