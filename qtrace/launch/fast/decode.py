"""Turning a fast run's frames into device accesses: the values the agent left in trace
state variables and the raw stack block it collected (:mod:`.actions`).

Each tracepoint has a role (data: :class:`Role`): the guest's start marker (``arm``: frames
before its first hit are firmware's and are skipped, as the breakpoint collector arms
there), or one generic accessor's call site (``read``/``write``, :data:`~.locate.ACCESSORS`).
A frame holds the MemoryRegion, offset and size the accessor was called with, the value
(a read: what the handler returned; a write: the 8 bytes the accessor's value points at,
with the shift and mask it applies before calling the handler), the stack and frame
pointers and the raw stack, unwound here (:mod:`.unwind`) into return addresses, innermost
first; the first is the tracepoint's own address. The stack pointer also says the thread.
Only frames of the captured device's regions are kept (the agent's condition already
filters them; a frame of another region is counted). The configuration-space and INTx
tracepoints (:data:`~.locate.CONFIG_SITES`, :data:`~.locate.IRQ_SITE`) leave the PCIDevice
where an accessor leaves its MemoryRegion and decode alike, kept for the recorded devices.
The KVM exit tracepoint (:func:`~.locate.exit_site`) leaves ``run``, the vCPU's index and
the exit reason there, and two more blocks: ``kvm_run``'s first bytes and the port I/O
data (:class:`ExitHit`, decoded into fields by :mod:`.kvm_run`). Frames come in the agent's
buffer order, the order the hits happened in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from qtrace.launch.fast.actions import TIMESTAMP, dma_chunks
from qtrace.launch.fast.kvm_run import KVM_RUN_BYTES
from qtrace.launch.fast.tsave import Frame
from qtrace.launch.fast.unwind import unwind

__all__ = [
    "Access", "AccessDecoder", "Decoded", "DmaHit", "ExitHit", "Hit", "MessageHit", "Role",
    "decode_accesses", "dma_bytes", "variable_numbers",
]

_U32 = 0xFFFFFFFF
_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class Role:
    """What one tracepoint records: ``read``/``write`` at an accessor (with where its
    arguments are), or ``arm`` (the start marker); ``address`` is where it sits."""

    kind: str
    slots: Mapping[str, int] = field(default_factory=dict)
    value_register: str = ""
    shift_register: str = ""
    mask_register: str = ""
    address: int = 0
    # A configuration-space access (:data:`~.locate.CONFIG_SITES`): "pci-config", where the
    # value is (``value_source``) and which argument is the size; the ``mr`` variable then
    # holds the PCIDevice. An INTx level change (kind and space "irq",
    # :data:`~.locate.IRQ_SITE`): ``mr`` the PCIDevice, ``off`` the pin, ``val`` the level.
    space: str = ""
    value_source: str = ""
    size_register: str = ""
    in_registers: bool = False  # the arguments are read from registers, not spill slots
    # A KVM exit (kind and space "exit", :func:`~.locate.exit_site`): where kvm_cpu_exec
    # keeps ``run``; ``mr`` then holds ``run``, ``off`` the vCPU's index, ``size`` the exit
    # reason, ``val`` where the port I/O data was collected (:func:`~.actions.exit_actions`).
    run_slot: int = 0
    # A DMA copy (kind and space "dma", :func:`~.locate.dma_site`): the bytes a record
    # keeps at most (:func:`~.actions.dma_actions`).
    dma_cap: int = 256


@dataclass
class Access:
    """One device access as decoded: its MemoryRegion (``region``), offset, size, value."""

    op: str
    region: int
    offset: int
    size: int
    value: int
    pcs: tuple[int, ...]
    frame: int
    sp: int = 0  # the stack pointer at the hit: which thread's stack it ran on
    us: int | None = None  # the agent's timestamp of the hit, in microseconds
    space: str = ""  # "pci-config", "irq": ``region`` is the PCIDevice; "": a MemoryRegion's


@dataclass
class ExitHit:
    """One KVM exit as decoded: the vCPU's index, the exit reason's number, the first
    bytes of its ``struct kvm_run`` (:data:`~.kvm_run.KVM_RUN_BYTES`) and the port I/O data
    block (``None``: not collected)."""

    vcpu: int
    reason: int
    run: bytes
    io_data: bytes | None
    pcs: tuple[int, ...]
    frame: int
    sp: int = 0
    us: int | None = None
    op: str = "exit"
    space: str = "exit"


@dataclass
class MessageHit:
    """One MSI or MSI-X interrupt as decoded (``kind`` ``msi``/``msix``): the PCIDevice,
    the vector, the message's bytes as the device held them (the MSI-X table entry, or the
    MSI capability), and for MSI-X the byte of pending bits and the function mask."""

    kind: str
    region: int  # the PCIDevice
    vector: int
    message: bytes
    pending_byte: int | None
    function_masked: bool
    pcs: tuple[int, ...]
    frame: int
    sp: int = 0
    us: int | None = None
    op: str = "message"
    space: str = "irq"


@dataclass
class DmaHit:
    """One DMA copy through the device's bus-master address space as decoded: the
    direction (``write``: the device wrote guest memory), the guest address, the length,
    and the bytes (the first ``cap`` of them; ``None``: a read from outside the guest RAM
    the run knew of, whose bytes were not collected)."""

    op: str
    addr: int
    size: int
    data: bytes | None
    pcs: tuple[int, ...]
    frame: int
    sp: int = 0
    us: int | None = None
    space: str = "dma"


@dataclass
class Decoded:
    """The accesses of a run and what could not be decoded."""

    accesses: list[Hit] = field(default_factory=list)
    frames_without_values: int = 0  # a frame whose variables are missing
    before_arming: int = 0  # the device's frames before the guest's start marker
    other_devices: int = 0  # frames of other devices' regions


Hit = Access | ExitHit | MessageHit | DmaHit
"""What a frame decodes to."""


def variable_numbers(header: Iterable[str]) -> dict[str, int]:
    """Trace state variable name -> number, from a tsave header's ``tsv`` lines
    (``tsv NUM:INITIAL:BUILTIN:NAME-IN-HEX``, numbers in hex)."""
    out: dict[str, int] = {}
    for line in header:
        if line.startswith("tsv "):
            parts = line[4:].split(":")
            if len(parts) == 4:
                out[bytes.fromhex(parts[3]).decode("ascii", "replace")] = int(parts[0], 16)
    return out


class AccessDecoder:
    """Decodes a run's frames one segment after another: a long run drains the agent's
    buffer several times (:mod:`.run`), and the arming, the counts and the order carry from
    one segment to the next. ``numbers`` maps the actions' variable names to the numbers
    the frames use (a segment read through ``tsave`` may name its own);
    ``in_generated_code`` says whether a return address is in TCG's code buffer."""

    def __init__(
        self,
        roles: Mapping[int, Role],
        regions: set[int],
        numbers: Mapping[str, int],
        in_generated_code: Callable[[int], bool],
        devices: set[int] | None = None,
    ) -> None:
        self.roles = roles
        self.regions = regions
        self.devices = devices or set()  # PCIDevice pointers whose config accesses count
        self.numbers = numbers
        self.in_generated_code = in_generated_code
        self.armed = not any(role.kind == "arm" for role in roles.values())
        self.counts = Decoded()  # the counts of every segment so far (no accesses kept)

    def feed(
        self, frames: Iterable[Frame], numbers: Mapping[str, int] | None = None
    ) -> list[Hit]:
        """The device's accesses, interrupts and the KVM exits among ``frames`` (one
        segment, in buffer order)."""
        numbers = self.numbers if numbers is None else numbers
        out: list[Hit] = []
        counts, roles, regions = self.counts, self.roles, self.regions

        def get(frame: Frame, name: str) -> int | None:
            number = numbers.get(name if name == TIMESTAMP else "q_" + name)
            value = None if number is None else frame.variables.get(number)
            return None if value is None else value & _U64

        for frame in frames:
            role = roles.get(frame.tracepoint)
            if role is None or frame.zeroed or frame.undecodable:
                continue
            if role.kind == "arm":
                self.armed = True
                continue
            if role.kind in ("msi", "msix"):
                self._message(frame, role, get, out)
                continue
            if role.kind == "dma":
                self._dma(frame, role, get, out)
                continue
            got = [get(frame, n) for n in ("mr", "off", "size", "val", "sp", "bp")]
            known = [v for v in got if v is not None]
            block = frame.block_from(known[4]) if len(known) == len(got) else None
            if block is None:
                counts.frames_without_values += 1
                continue
            mr, offset, size, value, sp, bp = known
            if role.kind == "exit":
                run = frame.block_at(mr)
                if run is None or len(run) < KVM_RUN_BYTES:
                    counts.frames_without_values += 1
                elif not self.armed:
                    counts.before_arming += 1
                else:
                    pcs = unwind(role.address, bp, sp, block, self.in_generated_code)
                    out.append(ExitHit(offset & _U32, size & _U32, run, frame.block_at(value),
                                       pcs, frame.index, sp, get(frame, TIMESTAMP)))  # fmt: skip
                continue
            config = role.space == "pci-config"
            on_device = config or role.kind == "irq"  # ``mr`` holds the PCIDevice
            if mr not in (self.devices if on_device else regions):
                counts.other_devices += 1
                continue
            if not self.armed:
                counts.before_arming += 1
                continue
            if config:
                value &= _size_mask(size)
            elif role.kind == "irq":
                value &= _U32  # the new level
            elif role.kind == "write":
                shift, mask = get(frame, "shift"), get(frame, "mask")
                if shift is None or mask is None:
                    counts.frames_without_values += 1
                    continue
                value = _shifted(value, shift, mask)
            pcs = unwind(role.address, bp, sp, block, self.in_generated_code)
            out.append(
                Access(role.kind, mr, offset & (_U32 if on_device else _U64), size & _U32,
                       value, pcs, frame.index, sp, get(frame, TIMESTAMP),
                       role.space)  # fmt: skip
            )
        return out


    def _message(
        self,
        frame: Frame,
        role: Role,
        get: Callable[[Frame, str], int | None],
        out: list[Hit],
    ) -> None:
        """One MSI or MSI-X frame (:func:`~.actions.message_actions`), for the recorded
        devices after the start marker."""
        counts = self.counts
        got = [get(frame, n) for n in ("mr", "off", "sp", "bp", "val")]
        known = [v for v in got if v is not None]
        message = frame.block_at(known[4]) if len(known) == len(got) else None
        block = frame.block_from(known[2]) if len(known) == len(got) else None
        pending, masked = None, False
        if role.kind == "msix" and message is not None:
            at, flag = get(frame, "mask"), get(frame, "shift")
            byte = None if at is None else frame.block_at(at)
            if byte is None or flag is None:
                message = None
            else:
                pending, masked = byte[0], bool(flag & 0xFF)
        if message is None or block is None:
            counts.frames_without_values += 1
            return
        device, vector, sp, bp, _ = known
        if device not in self.devices:
            counts.other_devices += 1
            return
        if not self.armed:
            counts.before_arming += 1
            return
        pcs = unwind(role.address, bp, sp, block, self.in_generated_code)
        out.append(MessageHit(role.kind, device, vector & _U32, message, pending, masked, pcs,
                              frame.index, sp, get(frame, TIMESTAMP)))  # fmt: skip


    def _dma(
        self,
        frame: Frame,
        role: Role,
        get: Callable[[Frame, str], int | None],
        out: list[Hit],
    ) -> None:
        """One DMA frame (:func:`~.actions.dma_actions`; the agent kept the device's
        bus-master address space's only), after the start marker."""
        counts = self.counts
        names = ("mr", "off", "size", "sp", "bp", "val", "shift", "mask")
        got = [get(frame, n) for n in names]
        known = [v for v in got if v is not None]
        if len(known) != len(got):
            counts.frames_without_values += 1
            return
        found, addr, size, sp, bp, source, write, capped = known
        block = frame.block_from(sp)
        data = dma_bytes(frame, source, capped, role.dma_cap) if found & 1 else None
        if block is None or (found & 1 and data is None):
            counts.frames_without_values += 1
            return
        if not self.armed:
            counts.before_arming += 1
            return
        pcs = unwind(role.address, bp, sp, block, self.in_generated_code)
        out.append(DmaHit("write" if write & 0xFF else "read", addr, size, data, pcs,
                          frame.index, sp, get(frame, TIMESTAMP)))  # fmt: skip


def dma_bytes(frame: Frame, source: int, capped: int, cap: int) -> bytes | None:
    """A DMA hit's bytes from its chunks (:func:`~.actions.dma_chunks`: one block of each
    power of two set in the capped length, at its place from ``source``); ``None`` when
    one is missing."""
    out = b""
    for chunk in dma_chunks(cap):
        if capped & chunk:
            at = source + len(out)
            block = next((d for a, d in frame.memory if a == at and len(d) == chunk), None)
            if block is None:
                return None
            out += block
    return out


def decode_accesses(
    frames: Iterable[Frame],
    roles: Mapping[int, Role],
    regions: set[int],
    numbers: Mapping[str, int],
    in_generated_code: Callable[[int], bool],
    devices: set[int] | None = None,
) -> Decoded:
    """The accesses to the MemoryRegions ``regions`` (the captured device's), and the
    configuration-space accesses of the PCIDevices ``devices``, in one run's frames, all at
    once (:class:`AccessDecoder` for the arguments)."""
    decoder = AccessDecoder(roles, regions, numbers, in_generated_code, devices)
    accesses = decoder.feed(frames)
    counts = decoder.counts
    return Decoded(accesses, counts.frames_without_values, counts.before_arming,
                   counts.other_devices)  # fmt: skip


def _shifted(raw: int, shift: int, mask: int) -> int:
    """The value the write accessor hands the handler: ``raw`` shifted (a negative
    shift, a signed int, shifts left) and masked."""
    shift &= _U32
    if shift & 0x8000_0000:
        raw = (raw << ((1 << 32) - shift)) & _U64
    else:
        raw >>= shift
    return raw & mask


def _size_mask(size: int) -> int:
    """The bits a config access of ``size`` bytes carries (the breakpoint collector masks
    its values so too)."""
    size &= _U32
    return (1 << (8 * size)) - 1 if 0 < size < 8 else _U64
