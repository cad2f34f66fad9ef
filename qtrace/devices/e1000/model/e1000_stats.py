"""Statistics counters of the e1000: which counters a frame bumps.

Why: drivers read these counters (and clear them by reading), and QEMU's traces show
their values, so the model counts the frames it moves the same way the SDM (13.7)
describes: octet counts run from the destination address through the CRC (frame length
plus 4), size buckets use that length, and counters saturate instead of wrapping.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["CounterHost", "bump", "count_missed", "count_rx", "count_tx"]

_CRC_BYTES = 4
_MAX32 = 0xFFFF_FFFF
_MAX64 = (1 << 64) - 1
# Upper bound (with CRC) -> bucket suffix; larger frames land in the last bucket.
_BUCKETS = ((64, "64"), (127, "127"), (255, "255"), (511, "511"), (1023, "1023"), (1 << 32, "1522"))
_PAIRS = {
    "GORC": ("GORCL", "GORCH"),
    "GOTC": ("GOTCL", "GOTCH"),
    "TOR": ("TORL", "TORH"),
    "TOT": ("TOTL", "TOTH"),
}


class CounterHost(Protocol):
    """What the counting needs from the device: named register storage."""

    def reg(self, name: str) -> int:
        """The stored value of register ``name`` (no side effects)."""
        ...

    def set_reg(self, name: str, value: int) -> None:
        """Store ``value`` in register ``name`` (no side effects)."""
        ...


def bump(host: CounterHost, name: str, amount: int = 1) -> None:
    """Add ``amount`` to a counter, saturating; ``GORC``-style stems name 64-bit pairs."""
    pair = _PAIRS.get(name)
    if pair is None:
        host.set_reg(name, min(host.reg(name) + amount, _MAX32))
        return
    low, high = pair
    total = min((host.reg(high) << 32 | host.reg(low)) + amount, _MAX64)
    host.set_reg(low, total & _MAX32)
    host.set_reg(high, total >> 32)


def _bucket(length: int) -> str:
    return next(suffix for limit, suffix in _BUCKETS if length <= limit)


def _cast(frame: bytes) -> str | None:
    dst = frame[:6]
    if dst == b"\xff" * 6:
        return "B"
    return "M" if dst and dst[0] & 1 else None


def count_tx(host: CounterHost, frame: bytes) -> None:
    """Counters for one transmitted frame (without CRC), the SDM's full set.

    QEMU 10.2.2 counts the same set (with or without a network backend), but a guest
    reads only TPT, GPTC and TOTL/TOTH back: GOTC, the PTC size buckets, BPTC and MPTC
    are gated by an access flag no QEMU property sets any more, so they read 0. That
    gating lives in the register map (``access = "zero"``), not here.
    """
    wire = len(frame) + _CRC_BYTES
    for name in ("TPT", "GPTC", f"PTC{_bucket(wire)}"):
        bump(host, name)
    bump(host, "TOT", wire)
    bump(host, "GOTC", wire)
    cast = _cast(frame)
    if cast:
        bump(host, f"{cast}PTC")


def count_rx(host: CounterHost, frame: bytes) -> None:
    """Counters for one received frame (without CRC)."""
    wire = len(frame) + _CRC_BYTES
    for name in ("TPR", "GPRC", f"PRC{_bucket(wire)}"):
        bump(host, name)
    bump(host, "GORC", wire)
    bump(host, "TOR", wire)
    cast = _cast(frame)
    if cast:
        bump(host, f"{cast}PRC")


def count_missed(host: CounterHost) -> None:
    """Counters for a frame dropped for want of receive descriptors."""
    bump(host, "RNBC")
    bump(host, "MPC")
