"""The report model: everything a view shows about one capture, computed once.

:func:`build_report` reads a capture directory (``trace.jsonl`` plus, when present,
``source-snippets.json`` or ``source/``) and returns a :class:`CaptureReport`. The Markdown,
HTML and terminal views only lay this model out; none of them computes anything.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from qtrace.annotate import (
    AnnotatedStack,
    Decoded,
    SourceProvider,
    annotate_stack,
    capture_source,
    decode_access,
)
from qtrace.annotate.registers import map_regions, region_of
from qtrace.devices import pack_for
from qtrace.errors import ReportError
from qtrace.export.threads import SETUP_OPS, ThreadRole, assign_threads
from qtrace.guests.symbols import GuestSymbols, access_places, guest_symbols
from qtrace.report.kernel_side import KernelSide, kernel_side
from qtrace.report.model_account import ModelAccounts, model_accounts
from qtrace.report.recorded import Recorded, recorded
from qtrace.report.sequence import Sequence, build_sequence
from qtrace.report.threads import WhereWorkRan, where_work_ran
from qtrace.report.timeline import Timeline, build_timeline
from qtrace.trace import Access, Dma, End, Exit, Header, Irq, Trace, read_trace
from qtrace.trace.kernel import KernelLog, read_kernel_log
from qtrace.trace.kernel_join import join_kernel
from qtrace.trace.layout import Memslot
from qtrace.trace.schema import Async, Region

__all__ = [
    "CaptureReport",
    "DmaRow",
    "ExitRow",
    "Finding",
    "BridgeWindow",
    "IrqRow",
    "PathDevice",
    "PathView",
    "RegionRow",
    "RegionsView",
    "RegisterRow",
    "StackView",
    "ThreadWork",
    "access_kind",
    "build_report",
    "report_from_trace",
    "representative_kind",
    "representative_stack",
]

# The vCPU thread's between-runs function: qemu_wait_io_event up to QEMU 10.1,
# qemu_process_cpu_events since 10.2. Neither may be on a device access path.
WAIT_IO_PREFIXES = ("qemu_wait_io_event", "qemu_process_cpu_events")

# Where QEMU replays the writes KVM buffered in its coalesced-MMIO ring: a device access
# with it on the stack made no exit of its own (the breakpoint collector marks such accesses
# ``coalesced`` by the same frame).
COALESCED_REPLAY = "kvm_flush_coalesced_mmio_buffer"


def access_kind(access: Access) -> str:
    """``<space> <op>``, e.g. ``mmio read``: the unit reports and diffs group accesses by."""
    return f"{access.space} {access.op}"


@dataclass(frozen=True)
class RegisterRow:
    """Accesses to one register (one space and offset; with a region map, one region too).

    ``region`` is the MemoryRegion of a trace whose header has a region map (``None``
    before discovery); ``by_region`` marks a row no register map describes, named
    ``<region>+<offset>``; ``device`` is set for the configuration space of another device on
    the captured one's path (the root port above it).
    """

    space: str
    offset: int
    name: str
    known: bool
    desc: str
    reads: int
    writes: int
    last_op: str
    last_value: int
    last_size: int
    decoded: str
    region: str | None = None
    by_region: bool = False
    device: str | None = None
    # The reference model's account of the row's last access (model_account.py), if any.
    account: tuple[str, ...] = ()
    last_seq: int = -1


@dataclass(frozen=True)
class RegionRow:
    """One region of the header's map and what this capture did with it.

    ``handlers_hit`` counts the accesses each function handled (the trace's ``handler``);
    ``register_map`` names the pack whose register map names this region's registers;
    ``placed_at`` is, for a BAR's own region, the address the guest's configuration accesses
    left in the BAR while they left its decoding (COMMAND I/O or memory) on, if they did;
    ``memslot`` the KVM memory slot in effect at the end of the trace that covers the BAR
    there (``memslots_recorded``: the trace has the run's memory-slot records at all).
    """

    region: Region
    reads: int = 0
    writes: int = 0
    handlers_hit: tuple[tuple[str, int], ...] = ()
    register_map: str | None = None
    placed_at: int | None = None
    memslot: Memslot | None = None
    memslots_recorded: bool = False

    @property
    def accesses(self) -> int:
        return self.reads + self.writes

    @property
    def ram_backed(self) -> bool:
        """Guest memory rather than handlers: RAM, ROM or a RAM device."""
        return self.region.kind in RAM_KINDS


RAM_KINDS = ("ram", "rom", "ram-device")
"""Region kinds backed by host memory: the guest's accesses reach no handler."""


@dataclass(frozen=True)
class RegionsView:
    """The device's region map (header ``regions``), in the header's order, with the numbers
    the regions section states; its sentences are in ``templates/regions.j2``.

    ``accel`` picks the wording of the RAM-backed finding; ``pack`` is the device's pack
    (``None`` without one) and ``pack_has_map`` whether it has a register map, ``mapped`` the
    regions that map names; ``path_devices`` the devices on the captured one's path whose
    configuration space the trace also has; ``recorded`` which kinds the capture recorded
    (without configuration-space accesses, the config space's row counts none).
    """

    rows: tuple[RegionRow, ...]
    accel: str
    pack: str | None
    mapped: tuple[str, ...] = ()
    path_devices: tuple[str, ...] = ()
    pack_has_map: bool = False
    recorded: Recorded = field(default_factory=Recorded)

    @property
    def ram_backed(self) -> tuple[RegionRow, ...]:
        return tuple(row for row in self.rows if row.ram_backed)

    @property
    def untouched_io(self) -> tuple[RegionRow, ...]:
        """I/O regions (and config space, when its accesses were recorded) whose handlers no
        access of this capture reached."""
        return tuple(
            row
            for row in self.rows
            if row.region.kind in ("io", "pci-config") and row.accesses == 0 and self.counted(row)
        )

    def counted(self, row: RegionRow) -> bool:
        """Whether the capture looked for accesses to ``row``'s region (the fast collector
        records no configuration-space access)."""
        return row.region.kind != "pci-config" or self.recorded.has("pci_config")

    @property
    def uncounted(self) -> tuple[RegionRow, ...]:
        """The regions whose accesses the capture did not record."""
        return tuple(row for row in self.rows if not self.counted(row))

    @property
    def empty_containers(self) -> tuple[RegionRow, ...]:
        """BARs registered as a container that holds no region (e1000e's flash BAR)."""
        return tuple(
            row
            for row in self.rows
            if row.region.kind == "container"
            and row.region.depth == 0
            and not any(
                other.region.bar == row.region.bar and other.region.depth > 0 for other in self.rows
            )
        )

    @property
    def io_regions(self) -> tuple[RegionRow, ...]:
        return tuple(row for row in self.rows if row.region.kind == "io")


@dataclass(frozen=True)
class StackView:
    """An annotated stack and what used it."""

    stack: AnnotatedStack
    uses: int
    kinds: tuple[str, ...]
    handlers: tuple[str, ...]
    exit_kinds: tuple[tuple[str, int], ...]
    roles: tuple[str, ...]
    also: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.stack.id

    @property
    def ids(self) -> tuple[str, ...]:
        """This stack's id and the ids of the stacks merged into it."""
        return (self.stack.id, *self.also)

    @property
    def title(self) -> str:
        """A heading: the innermost frame, what used the stack, how often."""
        top = self.stack.frames[0].func if self.stack.frames else "(empty)"
        what = ", ".join(self.kinds) if self.kinds else "/".join(self.roles)
        merged = f", {len(self.ids)} stacks" if self.also else ""
        return f"{top}: {what} ({self.uses}x{merged})"


@dataclass(frozen=True)
class ExitRow:
    """Exits of one reason and one address or port, with how QEMU handled them."""

    reason: str
    target: str
    count: int
    accesses: int
    handled_at: str


@dataclass(frozen=True)
class ThreadWork:
    """Records of one kind that ran on a thread other than the vCPU threads, as the trace's
    ``thread`` fields place them (a ``work-on-other-threads`` finding).

    ``record`` is the record type (``access``, ``exit``, ``irq``, ``dma``, ``async``); ``what``
    its kind: an async record's ``<kind> <op>`` (``timer run``, ``bh schedule``,
    ``fd-handler run``), an access's ``<space> <op>``, a DMA transfer's op, an interrupt's
    line; ``callback`` the function an async record names. ``set_up_op``/``set_up_on``: for the
    run of a timer or bottom half, the latest arm or schedule of its callback before it, when
    that was on another thread (e.g. ``arm`` on ``CPU 0/KVM``).
    """

    thread: str
    record: str
    what: str
    callback: str | None
    count: int
    set_up_op: str | None = None
    set_up_on: str | None = None


@dataclass(frozen=True)
class Finding:
    """A statement the trace supports (``holds``), or one it contradicts, as the numbers the
    trace gave; the sentence that says it lives in ``templates/findings.j2`` (keyed by ``key``),
    so a view never states more than these fields.

    ``exited`` counts accesses that came with a KVM exit of their own; ``coalesced`` writes
    KVM buffered without an exit; ``coalesced_before_access`` how many of them QEMU
    replayed inside ``kvm_cpu_exec`` while handling the exit of the next
    access, just before that access (the rest were replayed elsewhere). ``stack_ids`` names the
    stacks a contradicted statement is about; ``names`` the functions it looked for. The thread
    findings (traces whose records carry ``thread``): ``records`` counts the records placed on a
    thread, ``threads`` names the vCPU threads, ``elsewhere`` the work on the other threads.
    ``recorded``: which kinds the capture recorded, so a sentence never counts a kind that was
    not looked for (the fast collector records no exits under TCG: ``exited`` is then
    meaningless).
    """

    key: str
    holds: bool
    accesses: int = 0
    exited: int = 0
    stacks: int = 0
    threads: tuple[str, ...] = ()
    coalesced: int = 0
    coalesced_before_access: int = 0
    stack_ids: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    records: int = 0
    elsewhere: tuple[ThreadWork, ...] = ()
    recorded: Recorded = field(default_factory=Recorded)


@dataclass(frozen=True)
class IrqRow:
    """An interrupt line change and who made it."""

    seq: int
    level: int
    line: str
    stack: str | None
    by: str


@dataclass(frozen=True)
class DmaRow:
    """A DMA transfer and who made it."""

    seq: int
    op: str
    addr: int
    size: int
    data: str
    truncated: bool
    stack: str | None
    by: str


@dataclass(frozen=True)
class BridgeWindow:
    """One forwarding window of a bridge as its config bytes in the trace left it.

    ``open`` follows QEMU's rule (``pci_bridge_init_alias``): the window's decoding is on in
    COMMAND and ``limit >= base``; otherwise QEMU maps it with size 0.
    """

    kind: Literal["memory", "prefetchable memory", "I/O"]
    base: int
    limit: int
    open: bool


@dataclass(frozen=True)
class PathDevice:
    """A device on the captured one's path (the root port above it): its configuration
    accesses and the bus numbers and windows they left, where the trace has those bytes."""

    device: str
    reads: int
    writes: int
    handlers: tuple[tuple[str, int], ...]
    secondary_bus: int | None = None
    subordinate_bus: int | None = None
    windows: tuple[BridgeWindow, ...] = ()


@dataclass(frozen=True)
class PathView:
    """The devices between the root bus and the captured device, and whether their code is on
    the stacks of the device's own BAR accesses (``bridge_stacks``: the stack ids that have a
    frame in the bridge code; ``access_stacks``: how many stacks those accesses used).
    Sentences: ``templates/path.j2``."""

    topology: str
    devices: tuple[PathDevice, ...]
    access_stacks: int
    bridge_stacks: tuple[str, ...] = ()


BRIDGE_FILES = ("hw/pci-bridge/*", "hw/pci/pci_bridge.c")
"""Where QEMU's bridge and PCI Express port models live (frames a path check looks for)."""


@dataclass(frozen=True)
class CaptureReport:
    """One capture, ready to render."""

    name: str
    header: Header
    end: End | None
    command: str
    source_kind: str
    counts: tuple[tuple[str, int | str], ...]
    registers: tuple[RegisterRow, ...]
    stacks: tuple[StackView, ...]
    exits: tuple[ExitRow, ...]
    findings: tuple[Finding, ...]
    representative: Access | None
    representative_decoded: Decoded | None
    sequence: Sequence | None
    irqs: tuple[IrqRow, ...] = ()
    dmas: tuple[DmaRow, ...] = ()
    regions: RegionsView | None = None
    path: PathView | None = None
    representative_exit: Exit | None = None
    # Where the work ran (traces whose records name their thread; None for older ones).
    threads: WhereWorkRan | None = None
    # The representative access from the guest instruction to the re-entry (timeline.py),
    # and how KVM decided to exit (kernel_side.py; None under TCG).
    timeline: Timeline | None = None
    kernel_side: KernelSide | None = None
    # The device's reference model on this capture (None: the device has no model).
    model: ModelAccounts | None = None
    # Which kinds of record the capture recorded (recorded.py): what "none" may be said of.
    recorded: Recorded = field(default_factory=Recorded)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        h = self.header
        return f"How QEMU {h.qemu_version} emulates {h.device} under {h.accel.upper()}"

    def stack_view(self, stack_id: str | None) -> StackView | None:
        """The view of stack ``stack_id`` (or of the stack it was merged into), if any."""
        return next((s for s in self.stacks if stack_id in s.ids), None)

    def view_id(self, stack_id: str | None) -> str:
        """The id under which the report shows stack ``stack_id`` ("" if none)."""
        view = self.stack_view(stack_id)
        return view.id if view is not None else ""


# --- building ------------------------------------------------------------------------------


def build_report(
    capture: Path | str, *, command: str | None = None, name: str | None = None
) -> CaptureReport:
    """Read a capture directory (or trace file) and build its report model.

    Raises:
        ReportError: the capture has no trace.
        TraceFormatError: the trace is not valid ``qtrace-trace/1``.
    """
    capture = Path(capture)
    trace_path = capture / "trace.jsonl" if capture.is_dir() else capture
    if not trace_path.is_file():
        raise ReportError(
            f"{capture} has no trace.jsonl",
            hint=(
                "Pass a capture directory made by `qtrace capture` "
                "(captures/<device>-<accel>-<stamp>/)."
            ),
        )
    trace = read_trace(trace_path)
    source = capture_source(capture)
    run_dir = trace_path.parent
    return report_from_trace(
        trace,
        name=name or run_dir.name,
        source=source,
        command=command,
        kernel=read_kernel_log(run_dir),
        symbols=guest_symbols(run_dir, trace),
        run_dir=run_dir,
    )


def report_from_trace(
    trace: Trace,
    *,
    name: str,
    source: SourceProvider | None = None,
    command: str | None = None,
    kernel: KernelLog | None = None,
    symbols: GuestSymbols | None = None,
    run_dir: Path | None = None,
) -> CaptureReport:
    """Build the report model of an in-memory trace; ``kernel`` (its ``kernel.jsonl``) and
    ``symbols`` (the guest's) give the two ends of the end-to-end timeline."""
    header = trace.header
    kinds = recorded(header)
    annotated = {
        sid: annotate_stack(
            stack, qemu_version=header.qemu_version, accel=header.accel, source=source
        )
        for sid, stack in sorted(trace.stacks.items(), key=lambda kv: _natural(kv[0]))
    }
    exits_by_seq = {e.seq: e for e in trace.exits}
    accesses = trace.accesses
    representative = _representative(accesses)
    decoded = (
        decode_access(header.device, representative, header.regions) if representative else None
    )
    sequence = None
    exit_record = (
        exits_by_seq.get(representative.exit_seq)
        if representative is not None and representative.exit_seq is not None
        else None
    )
    join = join_kernel(trace, kernel) if kernel is not None and kernel.recorded else None
    places = access_places(trace, symbols)
    timeline = None
    if representative is not None:
        timeline = build_timeline(
            trace,
            representative,
            exit_record,
            places,
            kernel,
            join,
            _symbols_source(symbols, run_dir),
        )
    if representative is not None and representative.stack in annotated:
        place = places.get(representative.seq)
        sequence = build_sequence(
            annotated[representative.stack],
            representative,
            decoded,
            exit_record,
            header.accel,
            str(place) if place is not None else None,
            kinds,
        )
    source_kind = type(source).__name__ if source is not None else "none"
    accounts = model_accounts(trace)
    return CaptureReport(
        name=name,
        header=header,
        end=trace.end,
        command=command or " ".join(header.argv),
        source_kind=source_kind,
        counts=_counts(trace, kinds),
        registers=_register_rows(header, accesses, accounts),
        stacks=_stack_views(trace, annotated, exits_by_seq),
        exits=_exit_rows(trace, annotated),
        findings=_findings(header, trace, annotated, kinds),
        representative=representative,
        representative_decoded=decoded,
        sequence=sequence,
        irqs=tuple(
            IrqRow(i.seq, i.level, i.line, i.stack, _device_frame(annotated, i.stack))
            for i in trace.irqs
        ),
        dmas=tuple(
            DmaRow(
                d.seq,
                d.op,
                d.addr,
                d.size,
                d.data or "",
                d.truncated,
                d.stack,
                _device_frame(annotated, d.stack),
            )
            for d in trace.dmas
        ),
        regions=_regions_view(header, accesses, trace.memslots, kinds),
        path=_path_view(header, accesses, trace),
        representative_exit=exit_record,
        threads=where_work_ran(trace, kernel, join),
        timeline=timeline,
        kernel_side=kernel_side(trace, kernel, join),
        model=accounts,
        recorded=kinds,
    )


def _symbols_source(symbols: GuestSymbols | None, run_dir: Path | None) -> str | None:
    """The guest symbol file as the report names it: relative to the run directory."""
    if symbols is None:
        return None
    if run_dir is not None:
        return symbols.source.replace(f"{run_dir}/", "")
    return symbols.source


def _natural(text: str) -> tuple[str, int, str]:
    digits = "".join(ch for ch in text if ch.isdigit())
    return (text.rstrip("0123456789"), int(digits) if digits else -1, text)


KIND_PREFERENCE = (
    "mmio read",
    "pio read",
    "mmio write",
    "pio write",
    "pci-config read",
    "pci-config write",
)


def representative_kind(accesses: list[Access]) -> str | None:
    """The access kind a report explains end to end: MMIO read first, by preference."""
    present = Counter(access_kind(a) for a in accesses)
    for kind in KIND_PREFERENCE:
        if present[kind]:
            return kind
    return None


def representative_stack(accesses: list[Access], kind: str) -> str | None:
    """The stack most accesses of ``kind`` used (ties: the lowest id)."""
    usage = Counter(a.stack for a in accesses if access_kind(a) == kind and a.stack is not None)
    if not usage:
        return None
    return min(usage, key=lambda s: (-usage[s], _natural(s or "")))


def _representative(accesses: list[Access]) -> Access | None:
    kind = representative_kind(accesses)
    stack = representative_stack(accesses, kind) if kind else None
    if stack is None:
        return None
    return next(a for a in accesses if a.stack == stack and access_kind(a) == kind)


def _counts(trace: Trace, recorded: Recorded) -> tuple[tuple[str, int | str], ...]:
    """The summary's rows; a kind the capture did not record says so instead of a count."""
    kinds = Counter(access_kind(a) for a in trace.accesses)
    absent = f"not recorded by {recorded.by}"
    rows: list[tuple[str, int | str]] = [("accesses", len(trace.accesses))]
    rows += [(f"accesses: {k}", kinds[k]) for k in sorted(kinds)]
    rows.append(("distinct stacks", len(trace.stacks)))
    rows.append(
        ("KVM exits recorded", len(trace.exits))
        if recorded.has("kvm_exits")
        else ("KVM exits", absent)
    )
    rows.append(
        (
            "interrupt line changes"
            if all(i.line == "INTx" for i in trace.irqs)
            else "interrupts (INTx line changes, MSI/MSI-X messages)",
            len(trace.irqs),
        )
        if recorded.has("irq")
        else ("interrupts", absent)
    )
    rows.append(("DMA transfers", len(trace.dmas)) if recorded.has("dma") else ("DMA", absent))
    for kind, label in (
        ("async", "asynchronous work"),
        ("pci_config", "configuration-space accesses"),
    ):
        if not recorded.has(kind):
            rows.append((label, absent))
    return tuple(rows)


def _register_rows(
    header: Header, accesses: list[Access], accounts: ModelAccounts | None = None
) -> tuple[RegisterRow, ...]:
    """One row per register; with a region map, per region too (in the map's order within a
    space: virtio's common and device configuration both have an offset 0); ``accounts``
    gives each row the model's account of its last access."""
    regions = header.regions
    order = {(r.space, r.name): index for index, r in enumerate(regions)}
    mapped = list(map_regions(header.device, regions).values()) if regions else []
    groups: dict[tuple[str, str, int, int], list[Access]] = {}
    for access in accesses:
        position = order.get((access.space, access.region or ""), len(order)) if regions else 0
        key = (access.space, access.device or "", position, access.offset)
        groups.setdefault(key, []).append(access)
    rows = []
    for (space, other, _, offset), group in sorted(groups.items()):
        last = group[-1]
        decoded = decode_access(header.device, last, regions)
        region = region_of(last, regions) if regions else None
        rows.append(
            RegisterRow(
                space=space,
                offset=offset,
                name=decoded.name,
                known=decoded.known,
                desc=decoded.desc,
                reads=sum(1 for a in group if a.op == "read"),
                writes=sum(1 for a in group if a.op == "write"),
                last_op=last.op,
                last_value=last.value,
                last_size=last.size,
                decoded=decoded.summary(),
                region=last.region if regions else None,
                by_region=bool(regions) and space != "pci-config" and region not in mapped,
                device=other or None,
                account=accounts.lines(last.seq) if accounts is not None else (),
                last_seq=last.seq,
            )
        )
    return tuple(rows)


def _memslots_at_end(memslots: list[Memslot]) -> list[Memslot]:
    """The KVM memory slots still registered after the last record (per address space and
    slot number, the last add or set, unless a del followed it)."""
    live: dict[tuple[int, int], Memslot] = {}
    for record in memslots:
        key = (record.as_id, record.slot)
        if record.op == "del" or record.size == 0:
            live.pop(key, None)
        else:
            live[key] = record
    return [slot for slot in live.values() if slot.as_id == 0]


def _regions_view(
    header: Header,
    accesses: list[Access],
    memslots: list[Memslot] | None = None,
    kinds: Recorded | None = None,
) -> RegionsView | None:
    """The regions section's numbers: per region, the accesses and the handlers they hit."""
    if not header.regions:
        return None
    memslots = memslots or []
    pack = pack_for(header.device)
    mapped = map_regions(header.device, header.regions)
    reads: Counter[int] = Counter()
    writes: Counter[int] = Counter()
    hit: dict[int, Counter[str]] = {}
    index = {id(r): i for i, r in enumerate(header.regions)}
    for access in accesses:
        region = region_of(access, header.regions) if access.device is None else None
        if region is None:
            continue
        i = index[id(region)]
        (reads if access.op == "read" else writes)[i] += 1
        hit.setdefault(i, Counter())[access.handler or "?"] += 1
    config = _config_image(accesses)
    slots = _memslots_at_end(memslots)
    rows = []
    for i, region in enumerate(header.regions):
        register_map = None
        if region.kind == "pci-config":
            register_map = "pci-config"
        elif pack is not None and region in mapped.values():
            register_map = pack.name
        rows.append(
            RegionRow(
                region=region,
                reads=reads[i],
                writes=writes[i],
                handlers_hit=tuple(sorted(hit.get(i, Counter()).items())),
                register_map=register_map,
                placed_at=(placed := _placed_at(config, region)),
                memslot=next(
                    (
                        slot
                        for slot in slots
                        if placed is not None
                        and slot.start <= placed
                        and placed + region.size <= slot.start + slot.size
                    ),
                    None,
                ),
                memslots_recorded=bool(memslots),
            )
        )
    return RegionsView(
        rows=tuple(rows),
        accel=header.accel,
        pack=pack.name if pack else None,
        pack_has_map=pack is not None and pack.registers_file is not None,
        mapped=tuple(r.name for r in mapped.values()),
        path_devices=tuple(sorted({a.device for a in accesses if a.device is not None})),
        recorded=kinds if kinds is not None else Recorded(),
    )


def _stack_views(
    trace: Trace, annotated: dict[str, AnnotatedStack], exits: dict[int, Exit]
) -> tuple[StackView, ...]:
    """One pass over the records: what used each stack, and through which exits."""
    uses: dict[str, Counter[str]] = {sid: Counter() for sid in annotated}
    kinds: dict[str, set[str]] = {sid: set() for sid in annotated}
    handlers: dict[str, set[str]] = {sid: set() for sid in annotated}
    exit_kinds: dict[str, Counter[str]] = {sid: Counter() for sid in annotated}
    tcg = trace.header.accel == "tcg"
    for record in trace.records:
        if not isinstance(record, (Access, Exit, Irq, Dma, Async)):
            continue
        sid = record.stack
        if sid is None or sid not in annotated:
            continue
        uses[sid][record.type] += 1
        if isinstance(record, Async):
            # Work off the register path (ioeventfd, fd handler, bottom half, timer, irqfd).
            kinds[sid].add(f"{record.kind} {record.op}")
        elif isinstance(record, Access):
            kinds[sid].add(access_kind(record))
            if record.handler:
                handlers[sid].add(record.handler)
            linked = exits.get(record.exit_seq) if record.exit_seq is not None else None
            if linked is not None:
                exit_kinds[sid][linked.reason] += 1
            elif tcg:
                exit_kinds[sid]["no exit (TCG softmmu)"] += 1
    roles = {"access": "access", "irq": "irq", "dma": "dma", "exit": "exit", "async": "async"}
    # Stacks that differ only in frame addresses (under TCG: where in the translated code the
    # helper was called) are the same path: one view, the others listed in ``also``.
    groups: dict[tuple[tuple[str, str | None, int | None], ...], list[str]] = {}
    for sid, stack in annotated.items():
        key = tuple((f.func, f.file, f.line) for f in stack.frames)
        groups.setdefault(key, []).append(sid)
    views = []
    for sids in groups.values():
        merged_uses = sum((uses[sid] for sid in sids), Counter())
        merged_exits = sum((exit_kinds[sid] for sid in sids), Counter())
        views.append(
            StackView(
                stack=annotated[sids[0]],
                uses=sum(merged_uses.values()),
                kinds=tuple(sorted(set().union(*(kinds[sid] for sid in sids)))),
                handlers=tuple(sorted(set().union(*(handlers[sid] for sid in sids)))),
                exit_kinds=tuple(sorted(merged_exits.items())),
                roles=tuple(role for kind, role in roles.items() if merged_uses[kind]),
                also=tuple(sids[1:]),
            )
        )
    return tuple(views)


def _path_view(header: Header, accesses: list[Access], trace: Trace) -> PathView | None:
    """The path section's numbers: per device on the path, its config accesses and state; and
    which stacks of the captured device's BAR accesses have a bridge frame."""
    others = sorted({a.device for a in accesses if a.device is not None})
    if header.topology == "root-bus" and not others:
        return None
    devices = []
    for name in others:
        mine = [a for a in accesses if a.device == name and a.space == "pci-config"]
        image = _config_image(mine, name)
        handlers = Counter(a.handler or "?" for a in mine)
        devices.append(
            PathDevice(
                device=name,
                reads=sum(1 for a in mine if a.op == "read"),
                writes=sum(1 for a in mine if a.op == "write"),
                handlers=tuple(sorted(handlers.items())),
                secondary_bus=_config_value(image, 0x19, 1),
                subordinate_bus=_config_value(image, 0x1A, 1),
                windows=_bridge_windows(image),
            )
        )
    bar_stacks = sorted(
        {
            a.stack
            for a in accesses
            if a.space in ("mmio", "pio") and a.device is None and a.stack in trace.stacks
        },
        key=lambda sid: _natural(sid or ""),
    )
    with_bridge = tuple(
        sid
        for sid in bar_stacks
        if sid is not None
        and any(
            f.file is not None and any(fnmatchcase(f.file, g) for g in BRIDGE_FILES)
            for f in trace.stacks[sid].frames
        )
    )
    return PathView(header.topology, tuple(devices), len(bar_stacks), with_bridge)


def _bridge_windows(image: dict[int, int]) -> tuple[BridgeWindow, ...]:
    """The memory, prefetchable and I/O windows, computed as QEMU's pci_bridge_get_base and
    pci_bridge_get_limit do, for those whose registers the trace has."""
    command = _config_value(image, 0x04, 2)
    if command is None:
        return ()
    windows = []
    memory = (_config_value(image, 0x20, 2), _config_value(image, 0x22, 2))
    if memory[0] is not None and memory[1] is not None:
        base, limit = (memory[0] & 0xFFF0) << 16, ((memory[1] & 0xFFF0) << 16) | 0xFFFFF
        windows.append(BridgeWindow("memory", base, limit, bool(command & 0x2) and limit >= base))
    pref = (_config_value(image, 0x24, 2), _config_value(image, 0x26, 2))
    if pref[0] is not None and pref[1] is not None:
        base, limit = (pref[0] & 0xFFF0) << 16, ((pref[1] & 0xFFF0) << 16) | 0xFFFFF
        if pref[0] & 0xF == 1:
            high = (_config_value(image, 0x28, 4), _config_value(image, 0x2C, 4))
            if high[0] is None or high[1] is None:
                base = limit = -1
            else:
                base, limit = base | (high[0] << 32), limit | (high[1] << 32)
        if base >= 0:
            windows.append(
                BridgeWindow(
                    "prefetchable memory", base, limit, bool(command & 0x2) and limit >= base
                )
            )
    io = (_config_value(image, 0x1C, 1), _config_value(image, 0x1D, 1))
    if io[0] is not None and io[1] is not None:
        base, limit = (io[0] & 0xF0) << 8, ((io[1] & 0xF0) << 8) | 0xFFF
        upper = (_config_value(image, 0x30, 2), _config_value(image, 0x32, 2))
        if io[0] & 0xF == 1:
            if upper[0] is None or upper[1] is None:
                return tuple(windows)
            base, limit = base | (upper[0] << 16), limit | (upper[1] << 16)
        windows.append(BridgeWindow("I/O", base, limit, bool(command & 0x1) and limit >= base))
    return tuple(windows)


def _config_image(accesses: list[Access], device: str | None = None) -> dict[int, int]:
    """A device's configuration bytes as its recorded config accesses left them (each read
    or write, in order, sets the bytes it covers; little-endian). ``device`` ``None``: the
    captured device; else the named device on its path."""
    image: dict[int, int] = {}
    for access in accesses:
        if access.space != "pci-config" or access.device != device:
            continue
        for index in range(access.size):
            image[access.offset + index] = (access.value >> (8 * index)) & 0xFF
    return image


def _config_value(image: dict[int, int], offset: int, size: int) -> int | None:
    if any(offset + i not in image for i in range(size)):
        return None
    return sum(image[offset + i] << (8 * i) for i in range(size))


def _placed_at(image: dict[int, int], region: Region) -> int | None:
    """Where the guest left a BAR, if its decoding was on: the BAR register's address bits
    (both halves of a 64-bit memory BAR; the ROM BAR only with its enable bit)."""
    if region.bar is None or region.depth != 0 or not 0 <= region.bar <= 6:
        return None
    command = _config_value(image, 0x04, 2)
    offset = 0x30 if region.bar == 6 else 0x10 + 4 * region.bar
    value = _config_value(image, offset, 4)
    if command is None or value is None:
        return None
    if region.bar == 6:
        address = value & ~0x7FF if value & 1 and command & 0x2 else 0
    elif value & 1:
        address = value & ~0x3 if command & 0x1 else 0
    else:
        address = value & ~0xF if command & 0x2 else 0
        if (value >> 1) & 0x3 == 2:
            high = _config_value(image, offset + 4, 4)
            address = address | (high << 32) if high is not None and address else 0
    return address or None


def _kvm_handling(stack: AnnotatedStack) -> str:
    """``kvm_cpu_exec (file:line) -> callee`` for a stack that passes through kvm_cpu_exec."""
    frames = stack.frames
    for index, frame in enumerate(frames):
        if frame.func == "kvm_cpu_exec":
            callee = frames[index - 1].func if index > 0 else "?"
            return f"{frame.func} ({frame.location}) -> {callee}"
    return ""


def _exit_rows(trace: Trace, annotated: dict[str, AnnotatedStack]) -> tuple[ExitRow, ...]:
    linked: dict[int, list[Access]] = {}
    for access in trace.accesses:
        if access.exit_seq is not None:
            linked.setdefault(access.exit_seq, []).append(access)
    groups: dict[tuple[str, str], list[Exit]] = {}
    for record in trace.exits:
        if record.reason == "KVM_EXIT_MMIO" and record.phys_addr is not None:
            rw = "write" if record.is_write else "read"
            target = f"{rw} {record.len or '?'}B @ {record.phys_addr:#x}"
        elif record.reason == "KVM_EXIT_IO" and record.port is not None:
            target = f"{record.direction or '?'} {record.size or '?'}B port {record.port:#x}"
        else:
            target = ""
        groups.setdefault((record.reason, target), []).append(record)
    rows = []
    for (reason, target), group in sorted(groups.items()):
        users = [a for e in group for a in linked.get(e.seq, [])]
        handled = sorted(
            {_kvm_handling(annotated[a.stack]) for a in users if a.stack in annotated} - {""}
        )
        if not handled and not users:
            handled = ["no device access (not this device's region, or handled elsewhere)"]
        rows.append(ExitRow(reason, target, len(group), len(users), "; ".join(handled)))
    return tuple(rows)


def _replayed_before_access(accesses: list[Access], exits: list[Exit]) -> int:
    """Coalesced writes replayed while QEMU handled the exit of the very next access.

    A replay is recorded after the exit that was being handled when the ring was flushed; the
    write counts when the next access that is not itself a replay came through that same exit.
    """
    exit_seqs = sorted(e.seq for e in exits)
    count = 0
    for index, access in enumerate(accesses):
        if not access.coalesced:
            continue
        handling = [seq for seq in exit_seqs if seq < access.seq]
        following = next((a for a in accesses[index + 1 :] if not a.coalesced), None)
        if handling and following is not None and following.exit_seq == handling[-1]:
            count += 1
    return count


def _findings(
    header: Header,
    trace: Trace,
    annotated: dict[str, AnnotatedStack],
    kinds: Recorded | None = None,
) -> tuple[Finding, ...]:
    accesses = trace.accesses
    used = sorted({a.stack for a in accesses if a.stack in annotated}, key=_natural)
    if not used:
        return ()
    stacks = [annotated[s] for s in used if s is not None]
    findings = []
    waiting = tuple(s.id for s in stacks if s.has_func(*WAIT_IO_PREFIXES))
    threads = tuple(
        sorted({f.func for s in stacks for f in s.frames if f.layer.id == "vcpu-thread"})
    )
    n, k = len(accesses), len(stacks)
    kinds = kinds if kinds is not None else Recorded()
    if header.accel == "kvm":
        outside = tuple(s.id for s in stacks if not s.has_func("kvm_cpu_exec"))
        if not outside and not waiting:
            findings.append(
                Finding(
                    "synchronous-in-kvm-cpu-exec",
                    True,
                    accesses=n,
                    exited=sum(1 for a in accesses if a.exit_seq is not None),
                    stacks=k,
                    threads=threads,
                    coalesced=sum(
                        1 for a in accesses if _coalesced(a, annotated, kinds.has("kvm_exits"))
                    ),
                    coalesced_before_access=_replayed_before_access(accesses, trace.exits),
                    recorded=kinds,
                )
            )
        elif outside:
            findings.append(
                Finding("synchronous-in-kvm-cpu-exec", False, stacks=k, stack_ids=outside)
            )
    elif header.accel == "tcg" and not waiting:
        outside = tuple(s.id for s in stacks if not s.has_func("cpu_exec"))
        if not outside:
            findings.append(
                Finding("synchronous-in-cpu-exec", True, accesses=n, stacks=k, threads=threads)
            )
    findings.append(
        Finding(
            "not-in-qemu-wait-io-event",
            not waiting,
            stacks=k,
            stack_ids=waiting,
            names=WAIT_IO_PREFIXES,
        )
    )
    findings += _thread_findings(trace, kinds)
    return tuple(findings)


def _coalesced(access: Access, annotated: dict[str, AnnotatedStack], exits: bool) -> bool:
    """A write KVM buffered without an exit: marked so by the collector, or, in a trace that
    records no exits (whose collector marks nothing), replayed from the ring on its stack."""
    if access.coalesced or exits:
        return bool(access.coalesced)
    stack = annotated.get(access.stack) if access.stack is not None else None
    return stack is not None and stack.has_func(COALESCED_REPLAY)


def _thread_findings(trace: Trace, kinds: Recorded | None = None) -> list[Finding]:
    """Which threads the device's work ran on, for traces whose records name their thread
    (older traces: no finding). Threads are placed and named as the exports place them
    (:func:`~qtrace.export.threads.assign_threads`); a timer or bottom-half run is linked to
    the latest arm/schedule of its callback, as the Perfetto export's flows are."""
    placed = assign_threads(trace)
    if not any(record.thread for record, _ in placed):
        return []
    vcpus = tuple(dict.fromkeys(t.name for _, t in placed if t.role is ThreadRole.VCPU))
    latest_setup: dict[tuple[str, str], str] = {}
    work: dict[tuple[str, str, str, str | None, str | None, str | None], int] = {}
    for record, thread in placed:
        set_up_op = set_up_on = None
        if isinstance(record, Async):
            what = f"{record.kind} {record.op}"
            key = (record.kind, record.callback or "")
            if record.kind in SETUP_OPS and record.op == SETUP_OPS[record.kind]:
                latest_setup[key] = thread.name
            elif record.op == "run" and latest_setup.get(key, thread.name) != thread.name:
                set_up_op, set_up_on = SETUP_OPS[record.kind], latest_setup[key]
        elif isinstance(record, Access):
            what = access_kind(record)
        elif isinstance(record, Dma):
            what = record.op
        elif isinstance(record, Irq):
            what = record.line
        else:
            what = record.reason
        if thread.role is ThreadRole.VCPU:
            continue
        callback = record.callback if isinstance(record, Async) else None
        group = (thread.name, record.type, what, callback, set_up_op, set_up_on)
        work[group] = work.get(group, 0) + 1
    kinds = kinds if kinds is not None else Recorded()
    if not work:
        return [
            Finding("all-on-vcpu-threads", True, records=len(placed), threads=vcpus, recorded=kinds)
        ]
    elsewhere = tuple(
        ThreadWork(name, kind, what, callback, n, op, on)
        for (name, kind, what, callback, op, on), n in work.items()
    )
    return [
        Finding(
            "work-on-other-threads",
            True,
            records=len(placed),
            threads=vcpus,
            elsewhere=elsewhere,
            recorded=kinds,
        )
    ]


def _device_frame(annotated: dict[str, AnnotatedStack], stack_id: str | None) -> str:
    """The device-model frames of a stack, innermost first: who raised the IRQ or did the DMA."""
    stack = annotated.get(stack_id) if stack_id else None
    if stack is None:
        return ""
    return " <- ".join(f.func for f in stack.frames if f.layer.id == "device")
