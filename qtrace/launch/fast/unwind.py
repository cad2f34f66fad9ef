"""Offline stack unwinding through the raw block collected at ``$rsp``.

Why offline: the agent reads memory without fault protection, and TCG's generated code
keeps ``env`` (not a frame pointer) in ``rbp``, so chasing ``rbp`` inside the agent crashed
QEMU. The collector takes a bounded block at ``$rsp`` instead; here the frame-pointer chain
is followed only inside that block, with one rule for the frame of TCG's generated code,
which has no frame pointer: its caller's frame is :data:`TCG_FRAME` bytes above its stack
pointer (measured on 10.2.2: 0x4c0 bytes, saved ``rbp`` at CFA-16). Unwinding this way
reproduced gdb's ``bt`` down to ``start_thread`` (ENVIRONMENT.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FrameRule", "TCG_FRAME", "unwind"]


@dataclass(frozen=True)
class FrameRule:
    """Where a frame without a frame pointer keeps its caller's: CFA = sp + ``cfa_offset``,
    the return address at CFA-8 and the saved ``rbp`` at CFA + ``saved_rbp_at``."""

    cfa_offset: int
    saved_rbp_at: int


TCG_FRAME = FrameRule(cfa_offset=0x4C0, saved_rbp_at=-16)
MAX_FRAMES = 64


def unwind(
    rip: int,
    rbp: int,
    rsp: int,
    block: bytes,
    in_generated_code: Callable[[int], bool],
    tcg_rule: FrameRule = TCG_FRAME,
) -> tuple[int, ...]:
    """The return addresses of one hit, innermost (``rip``) first.

    ``block`` holds the stack from ``rsp`` up. A saved ``rbp`` outside the block ends the
    walk (the block's bound is the stack's depth the collector can see), as does a zero
    return address. A return into generated code takes the TCG rule: the generated code's
    stack pointer is just above the return address, and its caller's frame pointer is read
    at the rule's place.
    """
    pcs = [rip]
    end = rsp + len(block)

    def word(addr: int) -> int | None:
        if addr < rsp or addr + 8 > end:
            return None
        offset = addr - rsp
        return int.from_bytes(block[offset : offset + 8], "little")

    frame = rbp
    while len(pcs) < MAX_FRAMES:
        ret = word(frame + 8)
        saved = word(frame)
        if ret is None or saved is None or ret == 0:
            break
        pcs.append(ret)
        if in_generated_code(ret):
            cfa = frame + 16 + tcg_rule.cfa_offset
            ret = word(cfa - 8)
            saved = word(cfa + tcg_rule.saved_rbp_at)
            if ret is None or saved is None or ret == 0:
                break
            pcs.append(ret)
        if saved <= frame:
            break
        frame = saved
    return tuple(pcs)
