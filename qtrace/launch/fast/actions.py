"""What the agent does at each hit: a few values in trace state variables and a raw block of
the stack, collected without the register block.

Why: any register a ``collect`` names (even inside a memory expression: ``$rbp - 40``)
makes the agent store its whole register block, about 2.4 KB a hit; ``teval`` reads
registers and memory without storing them, and a memory ``collect`` whose address is a
trace state variable names no register. So each hit sets the MemoryRegion, offset, size,
value (a write: what its value pointer points at, with the shift and mask), ``rsp`` and
``rbp`` in trace state variables and collects those (13-byte ``V`` blocks) and
:data:`RAW_STACK_BYTES` at ``rsp`` (an ``M`` block), which the host unwinds
(:mod:`.unwind`). Measured on the e1000 probe under TCG, 20,088 accesses: 7.4 us a hit at
3.7 KB; the register block with the raw stack was 6 KB a hit; walking the chain in the
agent instead (guarded ``teval``s, one variable per return address) was 700 bytes but
23 us a hit: the agent finds a variable by walking its list of them.

Two quirks of gdb 13.1 and its agent, measured: ``teval $v = x`` aborts gdb ("expression
has min height < 0"), so a variable is set as ``$v += x - $v``; and the first ``teval`` of
a tracepoint has no effect, so each list starts with one that does nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from qtrace.launch.fast.kvm_run import IO_DATA_BYTES, IO_DATA_OFFSET, KVM_EXIT_IO, KVM_RUN_BYTES
from qtrace.launch.fast.locate import DMA_ARGUMENTS

__all__ = [
    "MSIX_ENTRY_BYTES", "MSI_CAPABILITY_BYTES", "RAW_STACK_BYTES", "TIMESTAMP", "VALUES",
    "config_actions", "dma_actions", "dma_chunks", "exit_actions", "hit_actions",
    "message_actions", "stack_block", "variables",
]

RAW_STACK_BYTES = 3584
"""The raw block collected at ``rsp``: enough for the TCG frame (0x4c0) and the chain down
to ``start_thread`` on the probe's stacks (20 frames under TCG, 14 under KVM)."""
VALUES = ("mr", "off", "size", "val", "shift", "mask", "sp", "bp", "base")
"""The values a hit records besides its stack block (a read leaves ``shift``/``mask``
unset)."""
TIMESTAMP = "trace_timestamp"
"""gdb's built-in trace state variable: when the hit was collected, in microseconds."""
_PREFIX = "q_"


def variables() -> list[str]:
    """Every trace state variable the actions use, without ``$``, in definition order."""
    return [_PREFIX + n for n in ("nop", *VALUES, "at")]


def _set(name: str, expr: str) -> str:
    var = f"${_PREFIX}{name}"
    return f"teval {var} += ({expr}) - {var}"


def _frame_and(mr: str, off: str) -> list[str]:
    """The first lines of an exit's or a message's actions: the agent's dead first
    ``teval``, the stack and frame pointers, and the ``mr`` and ``off`` variables."""
    return [_set("nop", "0"), _set("sp", "$rsp"), _set("bp", "$rbp"), _set("mr", mr),
            _set("off", off)]  # fmt: skip


def _collect_values(names: list[str]) -> str:
    """The ``collect`` of the named variables and the agent's timestamp."""
    return "collect " + ", ".join([*(f"${_PREFIX}{n}" for n in names), f"${TIMESTAMP}"])


def stack_block(stack_limit: int | None) -> list[str]:
    """The lines that collect a hit's raw stack block: :data:`RAW_STACK_BYTES` from
    ``rsp``, or, when ``rsp`` lies above ``stack_limit``, the same number of bytes ending
    where the stack ends (``stack_limit`` is the main thread's stack end minus the block's
    size). Why: the main thread's stack ends a little above ``main``'s frame (the
    environment and the auxiliary vector); a hit on it with a shallow stack (an INTx change
    raised by packet receive in the main loop) made the agent copy past the mapping's end,
    and QEMU died of SIGSEGV in the agent's memcpy (seen in CI, whose environment is
    smaller). The block's address is in its ``M`` header; the host unwinds from ``rsp``
    within it."""
    base, collect = stack_block_parts(stack_limit)
    return [*base, collect]


def stack_block_parts(stack_limit: int | None) -> tuple[list[str], str]:
    """:func:`stack_block` in its two parts: the lines that set the block's base (none when
    it starts at ``rsp``) and its ``collect``, for actions that set other values between
    them."""
    if stack_limit is None:
        return [], f"collect *(unsigned char (*)[{RAW_STACK_BYTES}])${_PREFIX}sp"
    return (
        [_set("base", f"$rsp > {stack_limit:#x} ? {stack_limit:#x} : $rsp")],
        f"collect *(unsigned char (*)[{RAW_STACK_BYTES}])${_PREFIX}base",
    )


def hit_actions(
    kind: str,
    slots: dict[str, int],
    value_register: str = "",
    shift_register: str = "",
    mask_register: str = "",
    stack_limit: int | None = None,
) -> list[str]:
    """The action lines of one tracepoint: ``read``/``write`` at an accessor (its spill
    ``slots``: register -> offset from rbp), or ``arm`` (the start marker: the hit alone);
    ``stack_limit``: :func:`stack_block`."""
    lines = [_set("nop", "0"), _set("sp", "$rsp")]
    if kind == "arm":
        return [*lines, f"collect ${_PREFIX}sp, ${TIMESTAMP}"]

    def slot(register: str, width: str) -> str:
        return f"*(unsigned {width} *)($rbp + {slots[register]})"

    lines += [
        _set("mr", slot("rdi", "long")),
        _set("off", slot("rsi", "long")),
        _set("size", slot("rcx", "int")),
        _set("bp", "$rbp"),
    ]
    collected = ["mr", "off", "size", "sp", "bp", "val"]
    if kind == "read":
        lines.append(_set("val", f"${value_register}"))
    else:
        lines += [
            _set("val", f"*(unsigned long *)${value_register}"),
            _set("shift", f"${shift_register}"),
            _set("mask", f"${mask_register}"),
        ]
        collected += ["shift", "mask"]
    return [
        *lines,
        _collect_values(collected),
        *stack_block(stack_limit),
    ]


def config_actions(
    slots: dict[str, int],
    value: str,
    size_register: str,
    in_registers: bool = False,
    stack_limit: int | None = None,
) -> list[str]:
    """The action lines of a configuration-space or INTx tracepoint
    (:data:`~.locate.CONFIG_SITES`, :data:`~.locate.IRQ_SITE`): the PCIDevice (in the ``mr``
    variable), the offset and the size from their spill ``slots`` (``in_registers``: from
    the registers themselves, at a call), the value from ``value`` (a register,
    ``slot:REG`` or ``const:N``), and the same stack block as an accessor's hit, so the host
    decodes both alike."""

    def slot(register: str, width: str) -> str:
        if in_registers:
            return f"${register}"
        return f"*(unsigned {width} *)($rbp + {slots[register]})"

    if value.startswith("slot:"):
        source = slot(value[len("slot:"):], "int")
    elif value.startswith("const:"):
        source = str(int(value[len("const:"):], 0))
    else:
        source = f"${value}"
    lines = [
        _set("nop", "0"),
        _set("sp", "$rsp"),
        _set("mr", slot("rdi", "long")),
        _set("off", slot("rsi", "int")),
        _set("size", slot(size_register, "int")),
        _set("bp", "$rbp"),
        _set("val", source),
    ]
    collected = ["mr", "off", "size", "sp", "bp", "val"]
    return [
        *lines,
        _collect_values(collected),
        *stack_block(stack_limit),
    ]


def exit_actions(run_slot: int, stack_limit: int | None = None) -> list[str]:
    """The action lines of the KVM exit tracepoint (:func:`~.locate.exit_site`, at the
    call of ``trace_kvm_run_exit(cpu_index, exit_reason)``): ``run`` (from its frame slot)
    in the ``mr`` variable, the vCPU's index (``rdi``) in ``off``, the exit reason
    (``rsi``) in ``size``; :data:`~.kvm_run.KVM_RUN_BYTES` of ``struct kvm_run`` at ``run``,
    :data:`~.kvm_run.IO_DATA_BYTES` of port I/O data at ``run + io.data_offset`` (``val``:
    for another exit, a place inside the first block, since the union holds no offset
    then and the agent reads without fault protection), and the stack block."""
    run = f"*(unsigned long *)($rbp + {run_slot})"
    data = f"*(unsigned long *)(${_PREFIX}mr + {IO_DATA_OFFSET})"
    lines = [
        *_frame_and(run, "$rdi"),
        _set("size", "$rsi"),
        _set("val", f"${_PREFIX}mr + ($rsi == {KVM_EXIT_IO} ? {data} : {IO_DATA_OFFSET})"),
    ]
    collected = ["mr", "off", "size", "sp", "bp", "val"]
    return [
        *lines,
        _collect_values(collected),
        f"collect *(unsigned char (*)[{KVM_RUN_BYTES}])${_PREFIX}mr",
        f"collect *(unsigned char (*)[{IO_DATA_BYTES}])${_PREFIX}val",
        *stack_block(stack_limit),
    ]


MSIX_ENTRY_BYTES = 16  # address low, address high, data, vector control (PCI spec)
MSI_CAPABILITY_BYTES = 14  # id, next, flags, address (32 or 64 bits), data (16 bits)


def message_actions(
    kind: str, slots: dict[str, int], fields: dict[str, int], stack_limit: int | None = None
) -> list[str]:
    """The action lines of an MSI or MSI-X tracepoint (:data:`~.locate.MESSAGE_SITES`):
    the PCIDevice in ``mr`` and the vector in ``off`` (from their spill slots), and the
    message as the device holds it then, located through the PCIDevice's ``fields``
    (offsets, :data:`~.locate.MESSAGE_FIELDS`). ``msix``: the vector's table entry (its
    address in ``val``, 16 bytes), its byte of pending bits (address in ``mask``, 1 byte)
    and the function mask (``shift``). ``msi``: the MSI capability in configuration space
    (its address in ``val``, 14 bytes). Then the stack block."""
    device = f"*(unsigned long *)($rbp + {slots['rdi']})"
    lines = _frame_and(device, f"*(unsigned int *)($rbp + {slots['rsi']})")

    def field(name: str, width: str = "long") -> str:
        return f"*(unsigned {width} *)(${_PREFIX}mr + {fields[name]})"

    if kind == "msix":
        lines += [
            _set("val", f"{field('msix_table')} + {MSIX_ENTRY_BYTES} * ${_PREFIX}off"),
            _set("mask", f"{field('msix_pba')} + (${_PREFIX}off >> 3)"),
            _set("shift", field("msix_function_masked", "char")),
        ]
        collected = ["mr", "off", "sp", "bp", "val", "mask", "shift"]
        blocks = [f"collect *(unsigned char (*)[{MSIX_ENTRY_BYTES}])${_PREFIX}val",
                  f"collect *(unsigned char (*)[1])${_PREFIX}mask"]  # fmt: skip
    else:
        lines.append(_set("val", f"{field('config')} + {field('msi_cap', 'char')}"))
        collected = ["mr", "off", "sp", "bp", "val"]
        blocks = [f"collect *(unsigned char (*)[{MSI_CAPABILITY_BYTES}])${_PREFIX}val"]
    return [
        *lines,
        _collect_values(collected),
        *blocks,
        *stack_block(stack_limit),
    ]


def dma_chunks(cap: int) -> tuple[int, ...]:
    """The block sizes a DMA hit collects its bytes in: each power of two up to ``cap``
    (itself one), largest first. Why: the agent collects blocks of a fixed size only,
    without fault protection, and a copy's buffer may end at a mapping's end, so the bytes
    are collected as the binary digits of the capped length, each at its place (the
    chunks of the digits not set point at the stack block instead): never a byte past
    the buffer."""
    if cap <= 0 or cap & (cap - 1):
        raise ValueError(f"the DMA cap must be a power of two, not {cap}")
    return tuple(1 << bit for bit in range(cap.bit_length() - 1, -1, -1))


def dma_actions(
    ram: Sequence[tuple[int, int, int]], cap: int, stack_limit: int | None = None
) -> list[str]:
    """The action lines of a DMA tracepoint (:func:`~.locate.dma_site`, at the call of
    ``address_space_rw(as, addr, attrs, buf, len, is_write)`` in a copy of
    ``dma_memory_rw_relaxed``): the guest address in ``off``, the length in ``size``, the
    direction in ``shift`` (1: the device writes guest memory), the length capped at
    ``cap`` in ``mask``, and where the bytes are in ``val``: a write's in ``buf``, a read's
    still in guest memory, found through ``ram`` (``(start, size, host)`` ranges of guest
    RAM in QEMU's memory, from discovery), ``mr`` 1 when they were found (0: a read from
    outside them, whose bytes are not collected). Then the stack block, collected first so
    that the host finds the stack pointer's block before any chunk, and the bytes in
    :func:`dma_chunks`."""
    args = DMA_ARGUMENTS
    addr, capped = f"${args['addr']}", f"${_PREFIX}mask"
    # One teval per range: gdb refuses an agent expression past 184 bytes of bytecode.
    reads = []
    for start, size, host in ram:
        inside = f"{addr} >= {start:#x} && {addr} + {capped} <= {start + size:#x}"
        value = f"${_PREFIX}val"
        reads.append(
            _set("val", f"!${_PREFIX}shift && {inside} ? {addr} + {host - start:#x} : {value}")
        )
    safe = f"${_PREFIX}sp" if stack_limit is None else f"${_PREFIX}base"
    lines = [
        _set("nop", "0"), _set("sp", "$rsp"), _set("bp", "$rbp"),
        _set("off", addr),
        _set("size", f"${args['len']}"),
        _set("shift", f"${args['is_write']} & 0xff"),
        _set("mask", f"${args['len']} > {cap} ? {cap} : ${args['len']}"),
        _set("val", f"${_PREFIX}shift ? ${args['buf']} : 0"),
        *reads,
        _set("mr", f"${_PREFIX}val != 0"),
    ]  # fmt: skip
    base, collect_stack = stack_block_parts(stack_limit)
    lines += base
    lines.append(_set("val", f"${_PREFIX}mr ? ${_PREFIX}val : {safe}"))
    # Each chunk's address goes through ``at`` first: gdb 13.1 aborts on a conditional
    # inside a ``collect``'s address ("expression is malformed"). Not through ``nop``: set
    # again after the first teval, the agent still collected at its first value, 0
    # (measured: QEMU died of SIGSEGV in the agent's memcpy).
    chunks = []
    for chunk in dma_chunks(cap):
        before = (2 * cap - 1) ^ (2 * chunk - 1)  # the larger digits: where this one starts
        chunks += [
            _set("at", f"(${_PREFIX}mask & {chunk}) ? "
                        f"${_PREFIX}val + (${_PREFIX}mask & {before:#x}) : {safe}"),
            f"collect *(unsigned char (*)[{chunk}])${_PREFIX}at",
        ]  # fmt: skip
    return [
        *lines,
        _collect_values(["mr", "off", "size", "sp", "bp", "val", "shift", "mask"]),
        collect_stack,
        *chunks,
    ]
