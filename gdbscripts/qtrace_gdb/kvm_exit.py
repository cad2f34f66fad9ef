"""'qtrace' KVM exit collector: a breakpoint on each ``case KVM_EXIT_...`` of kvm_cpu_exec.

The host finds the case lines in this QEMU version's source (they move between versions)
and passes them as ``file:line`` locations. On a hit, ``run`` (the vCPU's ``struct
kvm_run``) is decoded: ``io`` for port I/O exits, ``mmio`` for memory-mapped I/O, and
``internal`` (suberror, ndata, data[]) for KVM_EXIT_INTERNAL_ERROR, where KVM gave up on
the guest: the host ends the capture on that record (qtrace/launch/kvm_error.py decodes
the words, e.g. the failing instruction's bytes of an emulation failure).
Depends on kvm_cpu_exec having a local ``run`` and a parameter ``cpu`` (accel/kvm/kvm-all.c,
true from QEMU 2.x to 10.x).

The guest's end: once the collectors are armed, ``memory_map.py`` asks KVM to copy the
guest's registers into ``kvm_run`` at every exit (``kvm_valid_regs``, KVM_CAP_SYNC_REGS);
then each exit record carries ``guest_pc``, the guest's RIP as KVM left it (reading the
registers through QEMU would need an ioctl per exit, and ``env`` is stale under KVM).
"""

import gdb

from qtrace_gdb import kvm_run_layout
from qtrace_gdb.base import HitBreakpoint
from qtrace_gdb.regs import memory

# Linux's stable KVM ABI (include/uapi/linux/kvm.h): exit_reason numbers.
EXIT_REASONS = {
    0: "KVM_EXIT_UNKNOWN",
    1: "KVM_EXIT_EXCEPTION",
    2: "KVM_EXIT_IO",
    3: "KVM_EXIT_HYPERCALL",
    4: "KVM_EXIT_DEBUG",
    5: "KVM_EXIT_HLT",
    6: "KVM_EXIT_MMIO",
    7: "KVM_EXIT_IRQ_WINDOW_OPEN",
    8: "KVM_EXIT_SHUTDOWN",
    9: "KVM_EXIT_FAIL_ENTRY",
    10: "KVM_EXIT_INTR",
    11: "KVM_EXIT_SET_TPR",
    12: "KVM_EXIT_TPR_ACCESS",
    17: "KVM_EXIT_INTERNAL_ERROR",
    18: "KVM_EXIT_OSI",
    19: "KVM_EXIT_PAPR_HCALL",
    24: "KVM_EXIT_SYSTEM_EVENT",
    25: "KVM_EXIT_S390_STSI",
    26: "KVM_EXIT_IOAPIC_EOI",
    27: "KVM_EXIT_HYPERV",
    29: "KVM_EXIT_X86_RDMSR",
    30: "KVM_EXIT_X86_WRMSR",
    31: "KVM_EXIT_DIRTY_RING_FULL",
    32: "KVM_EXIT_AP_RESET_HOLD",
    33: "KVM_EXIT_X86_BUS_LOCK",
    35: "KVM_EXIT_NOTIFY",
    36: "KVM_EXIT_LOONGARCH_IOCSR",
    37: "KVM_EXIT_MEMORY_FAULT",
}
KVM_EXIT_IO = 2
KVM_EXIT_MMIO = 6
KVM_EXIT_IO_OUT = 1
KVM_EXIT_INTERNAL_ERROR = 17
KVM_SYNC_X86_REGS = 1 << 0  # include/uapi/linux/kvm.h (x86), kvm_run.kvm_valid_regs
# struct kvm_run's internal.data[] has 16 words (include/uapi/linux/kvm.h).
INTERNAL_DATA_WORDS = 16


class ExitBreakpoint(HitBreakpoint):
    """Stops nowhere: records the exit and lets the vCPU continue.

    Each breakpoint's first hit reads the exit's fields both through gdb's values and
    through the layout learned from them (kvm_run_layout.py, shared by all case lines); when
    the two records agree, later hits read the layout alone (no gdb frame), and when they do
    not, or the layout cannot be learned, every later exit is read through gdb and the
    capture's errors say so.
    """

    _shared = {"layout": None, "failed": None}  # one kvm_cpu_exec frame for every case line

    def __init__(self, session, location, labels):
        super().__init__(session, location)
        self.labels = labels
        self._checked = False

    def on_hit(self):
        layout = self._shared["layout"]
        if self._checked and layout is not None:
            try:
                record = self._decode_fast(layout)
            except gdb.MemoryError:
                record = None  # gdb's decode below reports what it cannot read
            if record is not None:
                return self.session.record_exit(record, None)
        frame = gdb.newest_frame()
        record = self._decode(frame)
        if not self._checked:
            self._check(frame, record)
        return self.session.record_exit(record, frame)

    def _check(self, frame, record):
        """Compares the layout's record with gdb's (``record``) on this breakpoint's first
        hit; an internal error, which only gdb decodes, leaves the check to the next hit."""
        shared = self._shared
        layout, reason = shared["layout"], shared["failed"]
        if reason is None and layout is None:
            layout, reason = kvm_run_layout.learn(frame)
        if reason is None:
            try:
                fast = self._decode_fast(layout)
            except gdb.MemoryError as exc:
                fast, reason = None, "reading the layout: %s" % exc
            if fast is None and reason is None:
                return
            if fast is not None and fast != record:
                reason = _difference(record, fast)
        self._checked = True
        if reason is None:
            shared["layout"] = layout
        elif shared["failed"] is None:
            shared["layout"], shared["failed"] = None, reason
            self.session.note_error("kvm exits decoded through gdb from now on: %s" % reason)

    def _decode_fast(self, layout):
        """The exit record from ``layout``'s reads, or None for an exit gdb must decode."""
        values, run, vcpu = layout.read()
        number = values["exit_reason"]
        if number == KVM_EXIT_INTERNAL_ERROR:
            return None
        return _record(number, values, run, vcpu)

    def _decode(self, frame):
        run = frame.read_var("run")
        try:
            vcpu = int(frame.read_var("cpu")["cpu_index"])
        except (gdb.error, ValueError):
            vcpu = None
        values = _ByGdb(run)
        number = values["exit_reason"]
        record = _record(number, values, int(run), vcpu)
        if number == KVM_EXIT_INTERNAL_ERROR:
            record.update(_internal(run))
        return record


class _ByGdb:
    """``run``'s fields by kvm_run_layout.RUN_FIELDS name, each read through gdb's values
    when asked for (ints, but ``mmio.data``: its bytes), as :meth:`Layout.read` gives them."""

    def __init__(self, run):
        self.run = run

    def __getitem__(self, name):
        value = kvm_run_layout.field(self.run, name)
        if name == "mmio.data":
            return memory(int(value.address), value.type.sizeof)
        return int(value)


def _record(number, values, run, vcpu):
    """The exit record of exit reason ``number`` from kvm_run's fields by name (``values``)
    at address ``run``: ``io`` for port I/O, ``mmio`` for memory-mapped I/O, and each with
    the data a write carries."""
    record = {"type": "exit", "reason": EXIT_REASONS.get(number, "KVM_EXIT_%d" % number)}
    if vcpu is not None:
        record["vcpu"] = vcpu
    if values["kvm_valid_regs"] & KVM_SYNC_X86_REGS:
        record["guest_pc"] = values["rip"]
    if number == KVM_EXIT_IO:
        size, count = values["io.size"], values["io.count"]
        out = values["io.direction"] == KVM_EXIT_IO_OUT
        record.update(
            port=values["io.port"], size=size, count=count, direction="out" if out else "in"
        )
        if out:
            length = size * count
            data = memory(run + values["io.data_offset"], length) if length > 0 else None
            record["data"] = data.hex() if data is not None else None
    elif number == KVM_EXIT_MMIO:
        length = values["mmio.len"]
        is_write = bool(values["mmio.is_write"])
        record.update(phys_addr=values["mmio.phys_addr"], len=length, is_write=is_write)
        if is_write:
            record["data"] = values["mmio.data"][:length].hex() if length > 0 else None
    return record


def _difference(by_gdb, by_layout):
    """What told the two decodes of one exit apart, for the collector error."""
    names = sorted(set(by_gdb) | set(by_layout))
    name = next(n for n in names if by_gdb.get(n) != by_layout.get(n))
    return "the learned layout read %s=%r where gdb read %r (%s)" % (
        name,
        by_layout.get(name),
        by_gdb.get(name),
        by_gdb.get("reason"),
    )


def _internal(run):
    """run->internal: suberror and its data words (linux-headers/linux/kvm.h in QEMU's tree)."""
    try:
        internal = run["internal"]
        ndata = min(int(internal["ndata"]), INTERNAL_DATA_WORDS)
        return {
            "suberror": int(internal["suberror"]),
            "ndata": int(internal["ndata"]),
            "internal_data": [int(internal["data"][i]) for i in range(ndata)],
        }
    except (gdb.error, gdb.MemoryError) as exc:
        return {"internal_error_unreadable": str(exc)}
