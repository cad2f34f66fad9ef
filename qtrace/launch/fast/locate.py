"""Choosing fast-tracepoint locations from a function's disassembly (per build).

Why: the agent's jump into its pad overwrites 5 bytes, so it needs an instruction of at
least 5 bytes; a function's first instructions are shorter (``push %rbp``, ``mov %rsp,%rbp``,
the argument spills), and some handlers have none at all (e1000's ``e1000_io_write``). So
the device's accesses are traced one level out, in QEMU's generic accessors, which every
``read``/``write`` MemoryRegionOps callback is called from (data: :data:`ACCESSORS`): each
has a 5-byte direct call where the value the handler got or returned is in a register or
behind one. The accessor's other arguments (the MemoryRegion, the offset, the size) are
read from the frame slots its prologue spilled them to (:func:`spill_slots`: the debug
build is -O0). The start marker's function takes the first long-enough instruction
(:func:`entry_location`). The input is gdb's ``disassemble /r`` text, so this is pure and
tested from recorded output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ARG_REGISTERS",
    "Instruction",
    "ACCESSORS",
    "ACCESSOR_ARGUMENTS",
    "AccessorSite",
    "CONFIG_SITES",
    "DMA_ARGUMENTS",
    "DMA_CALL",
    "DMA_FUNCTION",
    "EXIT_CALL",
    "EXIT_FUNCTION",
    "ExitSite",
    "IRQ_SITE",
    "MESSAGE_FIELDS",
    "MESSAGE_SITES",
    "PciSite",
    "site_locations",
    "spill_slots",
    "dma_site",
    "entry_location",
    "exit_site",
    "parse_disassembly",
    "value_location",
]

JUMP_BYTES = 5
ARG_REGISTERS = ("rdi", "rsi", "rdx", "rcx")
_ALIASES = {
    "rdi": ("rdi", "edi", "di", "dil"),
    "rsi": ("rsi", "esi", "si", "sil"),
    "rdx": ("rdx", "edx", "dx", "dl", "dh"),
    "rcx": ("rcx", "ecx", "cx", "cl", "ch"),
    "r8": ("r8", "r8d", "r8w", "r8b"),
    "r9": ("r9", "r9d", "r9w", "r9b"),
}
_LINE = re.compile(
    r"^\s*(?:=>\s*)?0x(?P<addr>[0-9a-f]+)\s+<\+(?P<off>\d+)>:\s+(?P<bytes>(?:[0-9a-f]{2}\s)+)\s*"
    r"(?P<text>.*)$"
)


@dataclass(frozen=True)
class Instruction:
    """One instruction: where it is, how long, its text (AT&T)."""

    address: int
    offset: int
    length: int
    text: str

    def writes(self, register: str) -> bool:
        """Does it write ``register`` (its destination, the last operand, or a call)?"""
        if self.text.startswith("call"):
            return True
        operands = self.text.split(None, 1)[1] if " " in self.text else ""
        dest = operands.rsplit(",", 1)[-1].strip()
        return dest.lstrip("%") in _ALIASES[register]


@dataclass(frozen=True)
class AccessorSite:
    """Where one generic accessor hands a device access on, and where its value is.

    ``read``: at the call of ``callee`` the handler has returned, and its value is in
    ``value_register``. ``write``: at the call of ``callee`` the handler has not run yet;
    the value it will get is ``(*value_register >> shift_register) & mask_register``
    (a negative shift shifts left), 8 bytes collected at ``value_register``.
    """

    op: str
    accessor: str
    callee: str
    value_register: str
    shift_register: str = ""
    mask_register: str = ""


# system/memory.c (softmmu/memory.c in 7.2): memory_region_read_accessor hands the value the
# read callback returned to memory_region_shift_read_access(value, shift, mask, tmp);
# memory_region_write_accessor computes the callback's value with
# memory_region_shift_write_access(value, shift, mask) before calling it.
ACCESSORS = (
    AccessorSite("read", "memory_region_read_accessor", "memory_region_shift_read_access",
                 "rcx"),
    AccessorSite("write", "memory_region_write_accessor", "memory_region_shift_write_access",
                 "rdi", "rsi", "rdx"),
)  # fmt: skip
ACCESSOR_ARGUMENTS = ("rdi", "rsi", "rcx")
"""The accessors' arguments read from their spill slots: the MemoryRegion, the offset in
it, the size (``(mr, addr, value, size, shift, mask, attrs)`` in both)."""

_SPILL = re.compile(r"^mov[lq]?\s+%(?P<reg>\w+),-0x(?P<off>[0-9a-f]+)\(%rbp\)$")
_WIDE = {alias: reg for reg, aliases in _ALIASES.items() for alias in aliases}


def spill_slots(instructions: list[Instruction]) -> dict[str, int]:
    """Where the prologue stored each argument register: register -> offset from ``rbp``
    (negative). Only stores before the first call or jump count (-O0 code spills every
    argument at entry)."""
    slots: dict[str, int] = {}
    for insn in instructions:
        if insn.text.startswith(("call", "j", "ret")):
            break
        match = _SPILL.match(insn.text)
        if match and match.group("reg") in _WIDE:
            slots.setdefault(_WIDE[match.group("reg")], -int(match.group("off"), 16))
    return slots


def parse_disassembly(text: str) -> list[Instruction]:
    """Instructions of gdb's ``disassemble /r FUNC`` output."""
    out: list[Instruction] = []
    for line in text.splitlines():
        match = _LINE.match(line.replace("\t", " "))
        if match:
            raw = match.group("bytes").split()
            out.append(
                Instruction(
                    int(match.group("addr"), 16),
                    int(match.group("off")),
                    len(raw),
                    match.group("text").strip(),
                )
            )
    return out


def entry_location(instructions: list[Instruction], arguments: int = 4) -> Instruction | None:
    """The first instruction of at least 5 bytes with the first ``arguments`` argument
    registers still as the caller passed them; ``None`` when there is none."""
    wanted = ARG_REGISTERS[:arguments]
    for insn in instructions:
        if insn.offset > 0 and insn.length >= JUMP_BYTES:
            return insn
        if insn.text.startswith(("j", "ret")) or any(insn.writes(r) for r in wanted):
            return None
    return None


def value_location(instructions: list[Instruction], callee: str) -> Instruction | None:
    """The call of ``callee`` (a 5-byte direct call) inside an accessor."""
    for insn in instructions:
        if insn.text.startswith("call") and f"<{callee}>" in insn.text:
            return insn if insn.length >= JUMP_BYTES else None
    return None


@dataclass(frozen=True)
class PciSite:
    """Where PCI's core hands one device's configuration-space access or INTx level change
    on: the functions every such event of the machine goes through (hw/pci/pci_host.c,
    hw/pci/pci.c; QEMU 7.2 to 10.x), which take the PCIDevice first (``rdi``), so the
    agent can filter on it.

    ``at`` says which instructions: ``"after-spills"``, the first of 5 bytes once the
    prologue has spilled the arguments (a config write is so recorded on entry, as the
    breakpoint collector records it, before QEMU refuses one out of range); ``"call:NAME"``,
    the call of NAME; ``"all-ones"``, each 5-byte ``mov $0xffffffff,%eax`` (a read QEMU
    refuses returns all ones). ``value``: a register holding the value there (``"r9"``),
    the spill slot of an argument (``"slot:rcx"``), or a constant (``"const:0xffffffff"``).
    The PCIDevice and the offset (``rsi``; the pin, for an irq) are read from their spill
    slots; so is the size, from ``size_register``'s (the pin again, for an irq). At a call
    (``in_registers``) they are read from the callee's argument registers instead.
    """

    op: str
    function: str
    at: str
    value: str
    size_register: str
    in_registers: bool = False


# pci_host_config_read_common(pci_dev, addr, limit, len) returns the value, which it hands
# to trace_pci_cfg_read(name, bus, slot, func, addr, val) as its sixth argument (r9) just
# before returning it; its early refusals return all ones. pci_host_config_write_common
# (pci_dev, addr, limit, val, len): val in rcx's slot, len in r8's.
CONFIG_SITES = (
    PciSite("read", "pci_host_config_read_common", "call:trace_pci_cfg_read", "r9", "rcx"),
    PciSite("read", "pci_host_config_read_common", "all-ones", "const:0xffffffff", "rcx"),
    PciSite("write", "pci_host_config_write_common", "after-spills", "slot:rcx", "r8"),
)
# pci_irq_handler calls pci_set_irq_state(dev, irq_num, level) only for a change of the
# pin's level (as gdbscripts/qtrace_gdb/irq.py explains). The tracepoint is at that call,
# reading the callee's argument registers: pci_set_irq_state itself is a leaf that keeps
# its spills below rsp (the red zone), where the agent's jump pad saves registers, so its
# slots no longer hold the arguments when the agent reads them (measured).
IRQ_SITE = PciSite("irq", "pci_irq_handler", "call:pci_set_irq_state", "rdx", "rsi",
                   in_registers=True)  # fmt: skip
SITE_ARGUMENTS = ("rdi", "rsi")
"""Besides the size and value: the PCIDevice and the offset (or pin), from their slots."""
_ALL_ONES = re.compile(r"^mov[l]?\s+\$0xffffffff,%eax$")


def site_locations(instructions: list[Instruction], site: PciSite) -> list[Instruction]:
    """The instructions ``site`` names in its function's disassembly (none when this
    build's code is not shaped so: the caller refuses)."""
    if site.at == "after-spills":
        spilled = False
        for insn in instructions:
            if _SPILL.match(insn.text):
                spilled = True
            elif insn.text.startswith(("j", "ret")):
                return []
            elif spilled and insn.length >= JUMP_BYTES:
                return [insn]
        return []
    if site.at.startswith("call:"):
        found = value_location(instructions, site.at[len("call:"):])
        return [] if found is None else [found]
    if site.at == "all-ones":
        return [i for i in instructions if i.length >= JUMP_BYTES and _ALL_ONES.match(i.text)]
    raise ValueError(f"unknown site location {site.at!r}")


# accel/kvm/kvm-all.c, kvm_cpu_exec (QEMU 7.2 to 10.x): once KVM_RUN returned and the exit
# goes to the switch on its reason, trace_kvm_run_exit(cpu->cpu_index, run->exit_reason) is
# called (a 5-byte call at -O0, its arguments in edi and esi); every exit the switch sees
# passes there exactly once, the ones KVM_RUN failed on (EINTR) do not. The switch then
# reloads ``run`` from its frame slot: ``mov -N(%rbp),%rax`` and ``mov 0x8(%rax),%eax``
# (exit_reason is at offset 8 of struct kvm_run).
EXIT_FUNCTION = "kvm_cpu_exec"
EXIT_CALL = "trace_kvm_run_exit"
_LOAD_SLOT = re.compile(r"^mov\s+-0x(?P<off>[0-9a-f]+)\(%rbp\),%(?P<reg>r\w+)$")


@dataclass(frozen=True)
class ExitSite:
    """Where the exit tracepoint goes (the call of :data:`EXIT_CALL`) and ``run_slot``,
    where ``kvm_cpu_exec`` keeps its ``struct kvm_run *run`` (offset from ``rbp``)."""

    at: Instruction
    run_slot: int


def exit_site(instructions: list[Instruction]) -> ExitSite | None:
    """The exit tracepoint's place in ``kvm_cpu_exec``'s disassembly; ``None`` when this
    build is not shaped so (no such call, or no reload of ``run`` after it)."""
    call = value_location(instructions, EXIT_CALL)
    if call is None:
        return None
    after = [i for i in instructions if i.address > call.address]
    for load, use in zip(after, after[1:]):
        match = _LOAD_SLOT.match(load.text)
        if match and use.text.startswith("mov") and use.text.split(None, 1)[1].startswith(
            f"0x8(%{match.group('reg')}),"
        ):
            return ExitSite(call, -int(match.group("off"), 16))
        if load.text.startswith(("call", "j", "ret")):
            break
    return None


# hw/pci/msi.c, msix.c (QEMU 7.2 to 10.x): void msi_notify(PCIDevice *dev, unsigned int
# vector), void msix_notify(PCIDevice *dev, unsigned vector), where a device signals a
# message-signalled interrupt. The tracepoint goes where the breakpoint collector stops, on
# entry: the first 5-byte instruction once both arguments are spilled, before any branch
# (a notify QEMU then drops, an unused or masked vector, is recorded so by both).
MESSAGE_SITES = (
    PciSite("msi", "msi_notify", "after-spills", "slot:rsi", "rsi"),
    PciSite("msix", "msix_notify", "after-spills", "slot:rsi", "rsi"),
)
MESSAGE_FIELDS = ("msix_table", "msix_pba", "msix_function_masked", "config", "msi_cap")
"""The PCIDevice fields a message is read from (their offsets are this build's: asked of
gdb at the run's start): the MSI-X table and pending bits and the function mask, or the
configuration space and where the MSI capability is in it."""


# include/system/dma.h (QEMU 7.2 to 10.x): the static inline dma_memory_rw_relaxed(as, addr,
# buf, len, dir, attrs) has a copy in each C file that uses it at -O0, and each copy ends in
# ``return address_space_rw(as, addr, attrs, buf, len, dir == DMA_DIRECTION_FROM_DEVICE)``:
# a 5-byte call with every argument in a register (rdi, rsi, rdx, rcx, r8, r9), followed by
# ``leave; ret`` and no instruction of 5 bytes. So the DMA tracepoint goes at that call,
# where a write's bytes are in ``buf`` and a read's are still in guest memory.
DMA_FUNCTION = "dma_memory_rw_relaxed"
DMA_CALL = "address_space_rw"
DMA_ARGUMENTS = {"as": "rdi", "addr": "rsi", "buf": "rcx", "len": "r8", "is_write": "r9"}
"""Where ``address_space_rw``'s arguments are at the call (the System V AMD64 ABI)."""


def dma_site(instructions: list[Instruction]) -> Instruction | None:
    """The DMA tracepoint's place in one copy of :data:`DMA_FUNCTION` (the call of
    :data:`DMA_CALL`); ``None`` when this copy is not shaped so."""
    return value_location(instructions, DMA_CALL)
