"""What QEMU and KVM say when KVM gives up on a guest: ``KVM_EXIT_INTERNAL_ERROR``.

On that exit QEMU prints ``KVM internal error. Suberror: N`` and the exit's extra data
words, dumps the guest's registers and code bytes to its stderr (our ``qemu.log``) and
*pauses* the VM (``vm_stop(RUN_STATE_INTERNAL_ERROR)`` in accel/kvm/kvm-all.c): QEMU does
not exit, so without this a capture only ends by its hang detection, minutes later. Two
sources describe the error, both parsed here, purely (tested from recorded text):

* the collector's ``exit`` record for the case, with ``run->internal`` (suberror, data
  words) read from ``struct kvm_run`` (gdbscripts/qtrace_gdb/kvm_exit.py);
* QEMU's own lines in ``qemu.log``, which also carry the register dump (``EIP=``/``RIP=``,
  the ``CS`` base) and ``Code=``, the bytes around the instruction pointer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

__all__ = [
    "KvmInternalError",
    "SUBERRORS",
    "from_exit_record",
    "parse_qemu_log",
    "merge",
    "KVM_ERROR_HINT",
]

# Linux include/uapi/linux/kvm.h, KVM_INTERNAL_ERROR_* (stable ABI).
SUBERRORS: dict[int, str] = {
    1: "emulation failure",
    2: "simultaneous exceptions",
    3: "error during event delivery",
    4: "unexpected exit reason",
}
# emulation_failure.flags bit: insn_size and insn_bytes[15] follow in the data words.
_FLAG_INSTRUCTION_BYTES = 1

KVM_ERROR_HINT = (
    "KVM on this host could not run the guest's code (nested or software KVM often cannot "
    "emulate some instructions); try --accel tcg."
)

_START = re.compile(r"KVM internal error\. Suberror: (\d+)")
_DATA = re.compile(r"extra data\[(\d+)\]: 0x([0-9a-fA-F]+)")
_IP = re.compile(r"\b(EIP|RIP)=([0-9a-fA-F]+)")
_CS = re.compile(r"^CS =([0-9a-fA-F]{4}) ([0-9a-fA-F]+)", re.MULTILINE)
_CODE = re.compile(r"^Code=(.*)$", re.MULTILINE)


@dataclass(frozen=True)
class KvmInternalError:
    """One ``KVM_EXIT_INTERNAL_ERROR``, as far as it is known yet.

    Attributes:
        suberror: ``run->internal.suberror`` (1: emulation failure).
        data: ``run->internal.data[0..ndata)``.
        ip: the guest's instruction pointer register and value, e.g. ``EIP=0x00005654``.
        cs_base: the code segment's base (the instruction is at cs_base + ip).
        insn_bytes: hex bytes of the failing instruction, from KVM (emulation failures
            with the instruction-bytes flag) or else from QEMU's ``Code=`` line.
        dump_complete: QEMU has printed its whole register dump (its ``Code=`` line is
            the last), so nothing more will come: the capture can end.
    """

    suberror: int | None = None
    data: tuple[int, ...] = ()
    ip: str | None = None
    cs_base: int | None = None
    insn_bytes: str | None = None
    dump_complete: bool = False

    @property
    def kind(self) -> str:
        """The suberror's name (Linux's KVM_INTERNAL_ERROR_* meaning)."""
        if self.suberror is None:
            return "unknown suberror"
        return SUBERRORS.get(self.suberror, f"suberror {self.suberror}")

    def describe(self) -> str:
        """One sentence for the end record and the user: what, where, which bytes."""
        parts = [f"KVM internal error (Suberror: {self.suberror}, {self.kind})"]
        if self.ip is not None:
            where = f"guest {self.ip}"
            if self.cs_base is not None:
                value = self.ip.partition("=")[2]
                where += f" (CS base {self.cs_base:#x}, linear {self.cs_base + int(value, 16):#x})"
            parts.append(where)
        if self.insn_bytes:
            parts.append(f"instruction bytes {self.insn_bytes}")
        return "; ".join(parts) + ". QEMU paused the guest."


def _instruction_bytes(suberror: int | None, data: tuple[int, ...]) -> str | None:
    """KVM's own copy of the failing instruction (``struct emulation_failure`` overlays
    ``internal``: data[0] is flags, then insn_size and insn_bytes[15] in 16 bytes)."""
    if suberror != 1 or len(data) < 3 or not data[0] & _FLAG_INSTRUCTION_BYTES:
        return None
    raw = data[1].to_bytes(8, "little") + data[2].to_bytes(8, "little")
    size = min(raw[0], 15)
    return " ".join(f"{b:02x}" for b in raw[1 : 1 + size]) or None


def from_exit_record(record: Mapping[str, object]) -> KvmInternalError:
    """The error as the collector saw it at kvm_cpu_exec's KVM_EXIT_INTERNAL_ERROR case."""
    suberror = record.get("suberror")
    words = record.get("internal_data")
    data = tuple(int(w) for w in words if isinstance(w, int)) if isinstance(words, list) else ()
    sub = suberror if isinstance(suberror, int) and not isinstance(suberror, bool) else None
    return KvmInternalError(suberror=sub, data=data, insn_bytes=_instruction_bytes(sub, data))


def parse_qemu_log(text: str) -> KvmInternalError | None:
    """The first KVM internal error QEMU reported in its log text, or ``None``."""
    start = _START.search(text)
    if start is None:
        return None
    rest = text[start.start() :]
    data = tuple(int(m.group(2), 16) for m in _DATA.finditer(rest))
    suberror = int(start.group(1))
    ip_match = _IP.search(rest)
    cs_match = _CS.search(rest)
    code_match = _CODE.search(rest)
    insn = _instruction_bytes(suberror, data)
    if insn is None and code_match is not None:
        insn = _code_from_ip(code_match.group(1))
    return KvmInternalError(
        suberror=suberror,
        data=data,
        ip=f"{ip_match.group(1)}=0x{ip_match.group(2)}" if ip_match else None,
        cs_base=int(cs_match.group(2), 16) if cs_match else None,
        insn_bytes=insn,
        # The Code= line is the dump's last; complete once its newline is there.
        dump_complete=code_match is not None and code_match.end() < len(rest),
    )


def _code_from_ip(code: str, count: int = 8) -> str | None:
    """The bytes from the one QEMU marks as at the instruction pointer (``<cf>``)."""
    tokens = code.split()
    for index, token in enumerate(tokens):
        if token.startswith("<") and token.endswith(">"):
            return " ".join([token[1:-1], *tokens[index + 1 : index + count]])
    return None


def merge(
    first: KvmInternalError | None, second: KvmInternalError | None
) -> KvmInternalError | None:
    """One description from both sources: the collector's words, QEMU's registers."""
    if first is None or second is None:
        return first or second
    return replace(
        first,
        suberror=first.suberror if first.suberror is not None else second.suberror,
        data=first.data or second.data,
        ip=first.ip or second.ip,
        cs_base=first.cs_base if first.cs_base is not None else second.cs_base,
        insn_bytes=first.insn_bytes or second.insn_bytes,
        dump_complete=first.dump_complete or second.dump_complete,
    )
