"""Synthetic stack blocks for the fast collector's decoder tests (shared by its test files)."""

from __future__ import annotations

SP, BP = 0x7000, 0x7040
"""The stack and frame pointers of the synthetic hits: the block starts at SP."""


def chain(*links: tuple[int, int]) -> bytes:
    """A stack block at SP holding frames at BP, BP+0x20, ...: (saved rbp, return)."""
    block = bytearray(0x100)
    for i, (saved, ret) in enumerate(links):
        at = BP - SP + 0x20 * i
        block[at : at + 16] = saved.to_bytes(8, "little") + ret.to_bytes(8, "little")
    return bytes(block)
