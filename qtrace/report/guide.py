"""The reports guide: "How QEMU emulates a PCI(e) device", told through committed captures.

``reports/manifest.toml`` may carry a ``[guide]`` table that names, by role, the manifest
entries whose captures are the evidence::

    [guide]
    path = "README.md"        # relative to reports/
    kvm = "e1000-kvm-probe"   # pc machine under KVM: config ports, MMIO exits, coalesced writes
    tcg = "e1000-tcg-probe"   # the same guest under TCG
    q35 = "e1000-q35-probe"   # q35: config space through MMCONFIG (ECAM)
    # tcg_linux = "..."       # a Linux guest under TCG (interrupts and DMA under a real driver)
    # virtio_blk, virtio_blk_ioeventfd_off, nvme, edu = "..."   # section 12: work off the vCPU

:func:`build_guide` pulls every number, address and stack the guide shows out of those
captures (:class:`CaptureEvidence`); ``templates/guide.md.j2`` holds the prose around them.
A role with no entry gets a "not captured yet" note instead of made-up evidence.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from qtrace.annotate import AnnotatedStack, SourceProvider, capture_source, decode_access
from qtrace.report.kernel_side import registers_between
from qtrace.report.model import CaptureReport, access_kind
from qtrace.report.off_vcpu import OffVcpuEvidence, off_vcpu_evidence
from qtrace.report.versions import Comparison
from qtrace.trace import Access, Dma, Exit, Irq, KvmHost, Trace, read_trace

__all__ = [
    "GUIDE_ROLES",
    "BarSizing",
    "CaptureEvidence",
    "Example",
    "Guide",
    "VersionsEvidence",
    "build_guide",
    "capture_evidence",
]

GUIDE_ROLES = (
    "kvm",
    "tcg",
    "q35",
    "tcg_linux",
    "virtio_blk",
    "virtio_blk_ioeventfd_off",
    "nvme",
    "edu",
)
OFF_VCPU_ROLES = ("virtio_blk", "virtio_blk_ioeventfd_off", "nvme", "edu")
"""The roles of section 12 (device work off the vCPU thread): their captures' evidence also
has :class:`~qtrace.report.off_vcpu.OffVcpuEvidence` (``work``)."""
CONFIG_ADDRESS_PORT = 0xCF8
CONFIG_DATA_PORTS = range(0xCFC, 0xD00)
BAR0_OFFSET = 0x10
COMMAND_OFFSET = 0x04
VCPU_LOOP_FUNCS = ("kvm_vcpu_thread_fn", "mttcg_cpu_thread_fn", "rr_cpu_thread_fn")
# The coalesced-PIO zones QEMU registers for CONFIG_ADDRESS, per machine. The host bridge asks
# for 0xCF8-0xCFB, but the PCI-to-ISA bridge's reset control register at 0xCF9 (PIIX3 on pc,
# ICH9 on q35) lies over it with a higher priority, so the FlatView splits the range and only
# the parts outside 0xCF9 become zones (seen in QEMU 7.2 and 10.2.2 under gdb; the integration
# tests check it against each image's FlatView). KVM buffers a write only if it lies wholly in
# one zone, so this table says which exits on 0xCF8 coalesced PIO would have avoided.
CONFIG_ADDRESS_ZONES: dict[str, tuple[tuple[int, int], ...]] = {
    "pc": ((0xCF8, 1), (0xCFA, 2)),
    "q35": ((0xCF8, 1), (0xCFA, 2)),
}
# QEMU's timer list: a record whose stack has it was made by a timer callback, not by a guest
# access (the frame it called is the device's callback).
TIMER_DISPATCH = "timerlist_run_timers"
COALESCED_FLUSH = "qemu_flush_coalesced_mmio_buffer"
# The main loop's own frame: a timer callback under it ran on the main-loop thread (timers of
# an iothread's AioContext run elsewhere).
MAIN_LOOP = "main_loop_wait"


@dataclass(frozen=True)
class Example:
    """One record of a capture (an access, an IRQ change or a DMA) with its annotated stack."""

    seq: int
    text: str
    exit_text: str
    stack: AnnotatedStack | None


@dataclass(frozen=True)
class BarSizing:
    """The guest's BAR0 probe: write all ones, read back the size mask, restore the base."""

    probe_seq: int
    mask: int
    size_bytes: int
    base: int
    first_mmio_seq: int | None
    first_mmio_addr: int | None


@dataclass(frozen=True)
class CaptureEvidence:
    """What one capture shows, ready for the guide's template.

    Every sentence the guide says about a run is one of these fields: ``config_address_*``
    describe the port exits on CONFIG_ADDRESS (their sizes, and how many would have fitted a
    coalesced-PIO zone, ``None`` when the machine's zones are not known); ``coalesced_*`` the
    writes KVM buffered (which function flushed them, how many on a vCPU thread);
    ``timer_*`` the interrupt raises a QEMU timer made (deferred raises) and by which
    callbacks; ``host_kernel`` the host the capture ran on (its ``manifest.json``);
    ``host_coalesced_*`` what this host's KVM answered QEMU's capability checks, and
    ``config_address_zones``/``bar_zone*`` the coalescing zones QEMU registered with it, as
    the collector recorded them (``None``/empty for captures made before it did).
    """

    role: str
    name: str
    link: str
    report: CaptureReport
    exit_counts: tuple[tuple[str, int], ...]
    config_address_exits: int
    config_data_exits: int
    config_accesses: int
    mmio_config_exits: int
    mmio_config_window: tuple[int, int] | None
    bar: BarSizing | None
    command_enable: Example | None
    examples: dict[str, Example] = field(default_factory=dict)
    coalesced_writes: int = 0
    flushed_by: str = ""
    vcpu_loop: tuple[tuple[int, str], ...] = ()
    vcpu_loop_func: str = ""
    accesses: int = 0
    raw_stacks: int = 0
    irq_raises: int = 0
    irq_lowers: int = 0
    dma_reads: int = 0
    dma_writes: int = 0
    off_vcpu_paths: int = 0
    host_kernel: str = ""
    config_address_writes: int = 0
    config_address_sizes: tuple[int, ...] = ()
    config_address_coalescible: int | None = None
    bar_exited: int = 0
    coalesced_flushed_from: tuple[tuple[str, int], ...] = ()
    coalesced_on_vcpu: int = 0
    timer_raises: int = 0
    timer_callbacks: tuple[str, ...] = ()
    timer_on_main_loop: int = 0
    host_coalesced_mmio: bool | None = None
    host_coalesced_pio: bool | None = None
    zones_recorded: bool = False
    config_address_zones: tuple[tuple[int, int], ...] = ()
    bar_zone_base: int | None = None
    bar_zones: int = 0
    bar_zone_gaps: tuple[str, ...] = ()
    work: OffVcpuEvidence | None = None


@dataclass(frozen=True)
class VcpuLoop:
    """The vCPU thread's loop in one QEMU release, as a capture's source snippets have it."""

    versions: tuple[str, ...]
    func: str
    lines: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class VersionsEvidence:
    """A comparison of QEMU releases the guide summarises, where its report is, and the
    vCPU loops of its releases (releases with the same loop text share one entry)."""

    comparison: Comparison
    link: str
    loops: tuple[VcpuLoop, ...] = ()
    wait_io_absent: bool = False


def versions_evidence(
    comparison: Comparison, link: str, captures: list[tuple[CaptureReport, Path]]
) -> VersionsEvidence:
    """The guide's view of a comparison; ``captures`` are its columns' reports and directories."""
    loops: dict[tuple[str, tuple[str, ...]], tuple[list[str], tuple[tuple[int, str], ...]]] = {}
    for report, directory in captures:
        stacks = {sid: view.stack for view in report.stacks for sid in view.ids}
        func, lines = _vcpu_loop(stacks, capture_source(directory))
        if lines:
            key = (func, tuple(text for _, text in lines))
            loops.setdefault(key, ([], lines))[0].append(report.header.qemu_version)
    absent = bool(captures) and all(
        any(f.key == "not-in-qemu-wait-io-event" and f.holds for f in report.findings)
        for report, _ in captures
    )
    return VersionsEvidence(
        comparison,
        link,
        tuple(VcpuLoop(tuple(v), func, lines) for (func, _), (v, lines) in loops.items()),
        absent,
    )


@dataclass(frozen=True)
class Guide:
    """The evidence of every role the manifest fills (``None``: not captured yet)."""

    roles: dict[str, CaptureEvidence | None]
    pending: tuple[str, ...]
    versions: VersionsEvidence | None = None

    def __getattr__(self, role: str) -> CaptureEvidence | None:
        try:
            return self.roles[role]
        except KeyError:
            raise AttributeError(role) from None


def _hex(value: int, size: int) -> str:
    return f"0x{value:0{size * 2}x}"


def _exit_text(record: Exit | None) -> str:
    if record is None:
        return ""
    if record.reason == "KVM_EXIT_MMIO" and record.phys_addr is not None:
        rw = "write" if record.is_write else "read"
        return (
            f"{record.reason} ({rw}, {record.len or '?'} bytes at {record.phys_addr:#x}), "
            f"exit #{record.seq}"
        )
    if record.reason == "KVM_EXIT_IO" and record.port is not None:
        return (
            f"{record.reason} ({record.direction or '?'}, {record.size or '?'} bytes "
            f"on port {record.port:#x}), exit #{record.seq}"
        )
    return f"{record.reason}, exit #{record.seq}"


def _access_text(device: str, access: Access) -> str:
    decoded = decode_access(device, access)
    name = f" `{decoded.name}`" if decoded.known else ""
    summary = decoded.summary()
    value = f"`{_hex(access.value, access.size)}`" + (f" ({summary})" if summary else "")
    return (
        f"{access.size}-byte {access.space} {access.op} of{name} "
        f"at offset {access.offset:#x}, value {value}"
    )


def _example(
    device: str,
    access: Access | None,
    exits: dict[int, Exit],
    stacks: dict[str, AnnotatedStack],
) -> Example | None:
    if access is None:
        return None
    exit_record = exits.get(access.exit_seq) if access.exit_seq is not None else None
    return Example(
        access.seq,
        _access_text(device, access),
        _exit_text(exit_record),
        stacks.get(access.stack) if access.stack else None,
    )


def _record_example(record: Irq | Dma, stacks: dict[str, AnnotatedStack]) -> Example:
    if isinstance(record, Irq):
        text = f"INTx {'raised (level 1)' if record.level else 'lowered (level 0)'}"
    else:
        text = f"DMA {record.op} of {record.size} bytes at guest physical {record.addr:#x}"
        if record.data:
            text += f", data `{record.data[:32]}{'…' if len(record.data) > 32 else ''}`"
    return Example(record.seq, text, "", stacks.get(record.stack) if record.stack else None)


def _bar_sizing(trace: Trace) -> BarSizing | None:
    config = [a for a in trace.accesses if a.space == "pci-config" and a.offset == BAR0_OFFSET]
    for index, access in enumerate(config):
        if access.op != "write" or access.value != 0xFFFFFFFF or index + 2 >= len(config):
            continue
        readback, restore = config[index + 1], config[index + 2]
        if readback.op != "read" or restore.op != "write":
            continue
        mask = readback.value & ~0xF & 0xFFFFFFFF
        size = ((~mask) & 0xFFFFFFFF) + 1
        base = restore.value & ~0xF & 0xFFFFFFFF
        first = next((a for a in trace.accesses if a.space == "mmio" and a.addr is not None), None)
        return BarSizing(
            access.seq,
            readback.value,
            size,
            base,
            first.seq if first else None,
            first.addr if first else None,
        )
    return None


def _vcpu_loop(
    stacks: dict[str, AnnotatedStack], source: SourceProvider | None
) -> tuple[str, tuple[tuple[int, str], ...]]:
    """The vCPU thread function's loop as the capture's snippet cache has it."""
    if source is None:
        return "", ()
    for stack in stacks.values():
        for frame in stack.frames:
            if frame.func in VCPU_LOOP_FUNCS and frame.file and frame.line:
                lines = [
                    (n, text)
                    for n in range(frame.line - 6, frame.line + 6)
                    if (text := source.line_text(frame.file, n)) is not None
                ]
                return frame.func, tuple(lines)
    return "", ()


def _host_kernel(capture: Path) -> str:
    """The host kernel the capture's ``manifest.json`` names ("" if it has none)."""
    path = capture / "manifest.json" if capture.is_dir() else capture.parent / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    host = data.get("host") if isinstance(data, dict) else None
    kernel = host.get("kernel") if isinstance(host, dict) else None
    return kernel if isinstance(kernel, str) else ""


def capture_evidence(
    role: str, name: str, link: str, report: CaptureReport, capture: Path
) -> CaptureEvidence:
    """Pull the guide's evidence out of one capture (its trace and its report model)."""
    trace = read_trace(capture / "trace.jsonl" if capture.is_dir() else capture)
    device = trace.header.device
    stacks = {sid: s.stack for s in report.stacks for sid in s.ids}
    exits = {e.seq: e for e in trace.exits}
    accesses = trace.accesses
    config_ids = {
        a.exit_seq for a in accesses if a.space == "pci-config" and a.exit_seq is not None
    }
    mmio_config = [
        exits[s] for s in sorted(config_ids) if s in exits and exits[s].reason == "KVM_EXIT_MMIO"
    ]
    window = None
    if mmio_config:
        addrs = [e.phys_addr for e in mmio_config if e.phys_addr is not None]
        window = (min(addrs), max(addrs)) if addrs else None

    def first(pred: object) -> Access | None:
        return next((a for a in accesses if pred(a)), None)  # type: ignore[operator]

    examples: dict[str, Example | None] = {
        "config_read": _example(
            device,
            first(lambda a: access_kind(a) == "pci-config read" and a.offset == 0),
            exits,
            stacks,
        ),
        "mmio_read": _example(
            device, first(lambda a: access_kind(a) == "mmio read"), exits, stacks
        ),
        "mmio_write": _example(
            device,
            first(lambda a: access_kind(a) == "mmio write" and not a.coalesced),
            exits,
            stacks,
        ),
        "coalesced_write": _example(device, first(lambda a: a.coalesced), exits, stacks),
        "pio_config": _example(
            device, first(lambda a: a.space == "pci-config" and a.stack is not None), exits, stacks
        ),
    }
    irq = next((i for i in trace.irqs if i.level == 1), None)
    dma = next((d for d in trace.dmas if d.op == "read"), None)
    dma_write = next((d for d in trace.dmas if d.op == "write"), None)
    if irq is not None:
        examples["irq_raise"] = _record_example(irq, stacks)
    if dma is not None:
        examples["dma_read"] = _record_example(dma, stacks)
    if dma_write is not None:
        examples["dma_write"] = _record_example(dma_write, stacks)

    def has(record: Irq | Dma, func: str) -> bool:
        stack = stacks.get(record.stack) if record.stack else None
        return stack is not None and stack.has_func(func)

    # a real driver's story: the device raises INTx after a transmit, the driver's handler
    # reads ICR (read-to-clear) and the line drops; the frame itself is DMA-read
    irq_tx = next((i for i in trace.irqs if i.level == 1 and has(i, "start_xmit")), None)
    irq_lower = next((i for i in trace.irqs if i.level == 0 and has(i, "mac_icr_read")), None)
    frame = next((d for d in trace.dmas if d.op == "read" and has(d, "process_tx_desc")), None)

    def timer_callback(record: Irq) -> str | None:
        """The callback the timer list ran for this record, if a timer made it."""
        stack = stacks.get(record.stack) if record.stack else None
        if stack is None:
            return None
        funcs = [f.func for f in stack.frames]
        if TIMER_DISPATCH not in funcs:
            return None
        index = funcs.index(TIMER_DISPATCH)
        return funcs[index - 1] if index > 0 else TIMER_DISPATCH

    # device work that no guest access started: a timer on the main loop raising the line
    timer_raised = [i for i in trace.irqs if i.level == 1 and timer_callback(i) is not None]
    irq_timer = timer_raised[0] if timer_raised else None
    for key, record in (
        ("irq_tx", irq_tx),
        ("irq_lower", irq_lower),
        ("dma_frame", frame),
        ("irq_timer", irq_timer),
    ):
        if record is not None:
            examples[key] = _record_example(record, stacks)
    if dma is not None:
        trigger = [a for a in accesses if a.seq < dma.seq]
        examples["dma_trigger"] = _example(device, trigger[-1] if trigger else None, exits, stacks)
    coalesced = [a for a in accesses if a.coalesced]
    flushed_by = ""
    if coalesced:
        before = [e for e in trace.exits if e.seq < coalesced[0].seq]
        flushed_by = _exit_text(before[-1]) if before else ""
    command = next(
        (
            a
            for a in accesses
            if a.space == "pci-config"
            and a.op == "write"
            and a.offset == COMMAND_OFFSET
            and a.value & 0x2
        ),
        None,
    )
    loop_func, loop = _vcpu_loop(stacks, capture_source(capture))
    address_outs = [
        e
        for e in trace.exits
        if e.reason == "KVM_EXIT_IO" and e.port == CONFIG_ADDRESS_PORT and e.direction == "out"
    ]
    kvm = trace.end.kvm if trace.end is not None else None
    recorded = kvm is not None and bool(kvm.zones)
    zones: tuple[tuple[int, int], ...] | None
    if recorded and kvm is not None:
        zones = tuple(
            (z.start, z.size)
            for z in kvm.zones_in_effect("pio")
            if z.start < CONFIG_ADDRESS_PORT + 4 and CONFIG_ADDRESS_PORT < z.start + z.size
        )
    else:
        zones = CONFIG_ADDRESS_ZONES.get(trace.header.machine or "")
    bar_base, bar_zones, bar_gaps = _bar_zones(kvm, device, accesses)
    coalescible = (
        sum(
            1
            for e in address_outs
            if any(
                start <= (e.port or 0) and (e.port or 0) + (e.size or 4) <= start + size
                for start, size in zones
            )
        )
        if zones is not None
        else None
    )
    flushed_from: Counter[str] = Counter()
    on_vcpu = 0
    for access in coalesced:
        stack = stacks.get(access.stack) if access.stack else None
        if stack is None:
            continue
        funcs = [f.func for f in stack.frames]
        if COALESCED_FLUSH in funcs and funcs.index(COALESCED_FLUSH) + 1 < len(funcs):
            flushed_from[funcs[funcs.index(COALESCED_FLUSH) + 1]] += 1
        on_vcpu += any(f.layer.id == "vcpu-thread" for f in stack.frames)
    return CaptureEvidence(
        role=role,
        name=name,
        link=link,
        report=report,
        exit_counts=tuple(sorted(Counter(e.reason for e in trace.exits).items())),
        config_address_exits=sum(1 for e in trace.exits if e.port == CONFIG_ADDRESS_PORT),
        config_data_exits=sum(1 for e in trace.exits if e.port in CONFIG_DATA_PORTS),
        config_accesses=sum(1 for a in accesses if a.space == "pci-config"),
        mmio_config_exits=len(mmio_config),
        mmio_config_window=window,
        bar=_bar_sizing(trace),
        command_enable=_example(device, command, exits, stacks),
        examples={k: v for k, v in examples.items() if v is not None},
        coalesced_writes=len(coalesced),
        flushed_by=flushed_by,
        vcpu_loop=loop,
        vcpu_loop_func=loop_func,
        accesses=len(accesses),
        raw_stacks=len(trace.stacks),
        irq_raises=sum(1 for i in trace.irqs if i.level),
        irq_lowers=sum(1 for i in trace.irqs if not i.level),
        dma_reads=sum(1 for d in trace.dmas if d.op == "read"),
        dma_writes=sum(1 for d in trace.dmas if d.op == "write"),
        off_vcpu_paths=sum(
            1
            for view in report.stacks
            if not any(f.layer.id == "vcpu-thread" for f in view.stack.frames)
        ),
        host_kernel=_host_kernel(capture),
        config_address_writes=len(address_outs),
        config_address_sizes=tuple(sorted({e.size for e in address_outs if e.size})),
        config_address_coalescible=coalescible,
        bar_exited=sum(1 for a in accesses if a.space == "mmio" and a.exit_seq is not None),
        coalesced_flushed_from=tuple(sorted(flushed_from.items())),
        coalesced_on_vcpu=on_vcpu,
        timer_raises=len(timer_raised),
        timer_callbacks=tuple(sorted({cb for i in timer_raised if (cb := timer_callback(i))})),
        timer_on_main_loop=sum(1 for i in timer_raised if has(i, MAIN_LOOP)),
        host_coalesced_mmio=_capability(kvm, "coalesced_mmio"),
        host_coalesced_pio=_capability(kvm, "coalesced_pio"),
        zones_recorded=recorded,
        config_address_zones=zones or (),
        bar_zone_base=bar_base,
        bar_zones=bar_zones,
        bar_zone_gaps=bar_gaps,
        work=off_vcpu_evidence(name, link, report, trace, capture)
        if role in OFF_VCPU_ROLES
        else None,
    )


def _capability(kvm: KvmHost | None, name: str) -> bool | None:
    """This host's KVM answer to one of QEMU's capability checks, if the capture recorded it."""
    if kvm is None or kvm.capabilities is None:
        return None
    return kvm.capabilities.get(name)


def _bar_zones(
    kvm: KvmHost | None, device: str, accesses: list[Access]
) -> tuple[int | None, int, tuple[str, ...]]:
    """The coalesced-MMIO zones QEMU registered over the device's MMIO BAR at the address the
    guest used, and the registers between them (those whose writes always exit).

    Returns:
        The BAR's base address, the number of zones on it, and the names of the registers in
        the gaps between zones (``None, 0, ()`` without recorded zones or MMIO accesses).
    """
    first = next((a for a in accesses if a.space == "mmio" and a.addr is not None), None)
    if kvm is None or first is None or first.addr is None:
        return None, 0, ()
    base = first.addr - first.offset
    on_bar = sorted(
        (z for z in kvm.zones_in_effect("mmio") if z.region == first.region and z.start >= base),
        key=lambda z: z.start,
    )
    gaps = registers_between(device, on_bar, base)
    return (base if on_bar else None), len(on_bar), gaps


def build_guide(
    roles: dict[str, CaptureEvidence | None], versions: VersionsEvidence | None = None
) -> Guide:
    """The guide model; roles the manifest leaves empty are listed as pending."""
    filled = {role: roles.get(role) for role in GUIDE_ROLES}
    return Guide(filled, tuple(r for r in GUIDE_ROLES if filled[r] is None), versions)
