"""Plain pipes for a process started with the Docker exec API.

pygdbmi's IoManager works on file objects it can ``select`` on. Docker gives us one socket
that multiplexes stdout and stderr in frames (8-byte header: stream, 0, 0, 0, length). A
small thread splits the frames into two OS pipes; stdin is the socket itself.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from typing import IO

__all__ = ["ExecPipes", "split_frames"]

logger = logging.getLogger(__name__)

_HEADER = struct.Struct(">BxxxL")
STDOUT, STDERR = 1, 2


def split_frames(buffer: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Complete (stream, payload) frames in ``buffer`` and the incomplete rest. Pure."""
    frames = []
    while len(buffer) >= _HEADER.size:
        stream, length = _HEADER.unpack_from(buffer)
        if len(buffer) < _HEADER.size + length:
            break
        frames.append((stream, buffer[_HEADER.size : _HEADER.size + length]))
        buffer = buffer[_HEADER.size + length :]
    return frames, buffer


class ExecPipes:
    """stdin/stdout/stderr file objects for an exec socket; ``close()`` ends the pump."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        out_r, self._out_w = os.pipe()
        err_r, self._err_w = os.pipe()
        self.stdout: IO[bytes] = os.fdopen(out_r, "rb", buffering=0)
        self.stderr: IO[bytes] = os.fdopen(err_r, "rb", buffering=0)
        self.stdin: IO[bytes] = sock.makefile("wb", buffering=0)  # type: ignore[assignment]
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="qtrace-exec-pump", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        pending = b""
        try:
            while True:
                chunk = self._sock.recv(65536)
                if not chunk:
                    break
                frames, pending = split_frames(pending + chunk)
                for stream, payload in frames:
                    os.write(self._err_w if stream == STDERR else self._out_w, payload)
        except OSError as exc:
            logger.debug("exec socket closed: %s", exc)
        finally:
            self.closed.set()
            for fd in (self._out_w, self._err_w):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5)
        for handle in (self.stdin, self.stdout, self.stderr):
            try:
                handle.close()
            except OSError:
                pass
