"""The memory map that decides whether a guest access exits: KVM slots, FlatViews, ioeventfds.

A guest-physical address inside a KVM memory slot is RAM or ROM the guest reaches without
leaving KVM; an address in no slot faults, and KVM either completes the access itself (its
in-kernel LAPIC, IOAPIC, PIT, an ioeventfd, a coalesced-MMIO zone) or exits to QEMU with
KVM_EXIT_MMIO. Port I/O always traps. This module records what QEMU told KVM and what
QEMU's own memory API serves, as trace records (TRACE_FORMAT.md, "The memory map"):

``memslot``
    every call of ``kvm_set_user_memory_region`` (accel/kvm/kvm-all.c; the one function
    that issues KVM_SET_USER_MEMORY_REGION(2), same signature in QEMU 7.2 to 10.2): slot,
    address space id, guest-physical start, size (0: the slot is deleted), flags.
``ioeventfd``
    every ``kvm_mem_ioeventfd_add``/``_del`` and ``kvm_io_ioeventfd_add``/``_del`` (the KVM
    memory listeners' ioeventfd callbacks): writes there are completed by KVM signalling
    an eventfd, with no exit.
``flatview``
    the FlatView of ``address_space_memory`` and ``address_space_io`` (each range: start,
    size, the MemoryRegion serving it and its kind) when the header is written, when the
    collectors are armed, and after every change QEMU makes to either (checked at each
    return of ``memory_region_transaction_commit``, where a change takes effect), so a BAR
    being programmed shows as the change it causes.
``kvm_vcpu``
    at arming, under KVM, one per vCPU: its index, its thread id, and whether the
    collector asked KVM to copy the guest's registers into ``kvm_run`` at every exit
    (``kvm_valid_regs |= KVM_SYNC_X86_REGS``; QEMU leaves the field alone), so that each
    exit record can carry the guest's RIP (``kvm_exit.py``). It also carries the moment in
    both clocks (``t`` and ``monotonic_s``), which lets the host line up the kernel's
    tracepoints (``trace_clock`` mono) with the trace.

Changes made before the trace header exists (machine creation) are kept and written once it
does. The breakpoints are on from QEMU's start, record no stack and never stop QEMU.
"""

import time

import gdb

from qtrace_gdb.base import (
    HitBreakpoint,
    entry_location,
    find_function,
    function_block,
    return_addresses,
)

SLOT_FUNCTION = "kvm_set_user_memory_region"
IOEVENTFD_FUNCTIONS = {
    "kvm_mem_ioeventfd_add": ("mmio", "add"),
    "kvm_mem_ioeventfd_del": ("mmio", "del"),
    "kvm_io_ioeventfd_add": ("pio", "add"),
    "kvm_io_ioeventfd_del": ("pio", "del"),
}
COMMIT_FUNCTION = "memory_region_transaction_commit"
ADDRESS_SPACES = (("memory", "address_space_memory"), ("io", "address_space_io"))
# include/uapi/linux/kvm.h (x86): kvm_run.kvm_valid_regs bit for struct kvm_regs.
KVM_SYNC_X86_REGS = 1 << 0
MAX_RANGES = 4096  # a bound on one FlatView walk (a PC's memory view has tens of ranges)
MAX_VCPUS = 1024


def _u128(value):
    """An Int128 (a 128-bit integer, or a two-word struct) read as two 64-bit words."""
    words = value.address.cast(gdb.lookup_type("unsigned long").pointer())
    return int(words[0]) | (int(words[1]) << 64)


def _offset(struct, path):
    """Byte offset of a (nested) field, e.g. ``("addr", "start")`` in FlatRange."""
    offset = 0
    current = struct.strip_typedefs()
    for name in path:
        match = [f for f in current.fields() if f.name == name]
        if not match:
            raise gdb.GdbError("no field %s in %s" % (name, current))
        offset += match[0].bitpos // 8
        current = match[0].type.strip_typedefs()
    return offset


class _Layout:
    """Where the fields read per range sit (looked up once: reading a FlatView through
    gdb.Value field by field costs tens of milliseconds per range; raw bytes do not)."""

    def __init__(self):
        fr = gdb.lookup_type("FlatRange")
        mr = gdb.lookup_type("MemoryRegion")
        self.fr_size = fr.strip_typedefs().sizeof
        self.fr = {
            "mr": _offset(fr, ("mr",)),
            "offset_in_region": _offset(fr, ("offset_in_region",)),
            "start": _offset(fr, ("addr", "start")),
            "size": _offset(fr, ("addr", "size")),
            "romd_mode": _offset(fr, ("romd_mode",)),
            "readonly": _offset(fr, ("readonly",)),
        }
        self.mr = {
            name: _offset(mr, (name,)) for name in ("ram", "readonly", "rom_device", "ram_device")
        }
        self.mr_name = _offset(mr, ("name",))
        fv = gdb.lookup_type("FlatView")
        self.fv_ranges = _offset(fv, ("ranges",))
        if _offset(fv, ("nr",)) != self.fv_ranges + 8:
            raise gdb.GdbError("FlatView.nr does not follow FlatView.ranges")
        self.mr_span = max(list(self.mr.values()) + [self.mr_name]) + 8


_layout = None
_names = {}  # MemoryRegion * -> name (a region's name never changes)


def _u64(data, offset):
    return int.from_bytes(data[offset : offset + 8], "little")


def region_kind(flags):
    """The kind of what serves a range (the header's region kinds, plus ``romd``)."""
    if flags["ram_device"]:
        return "ram-device"
    if flags["ram"]:
        return "rom" if flags["readonly"] else "ram"
    if flags["rom_device"]:
        return "romd"
    return "io"


def _get_layout():
    global _layout
    if _layout is None:
        _layout = _Layout()
    return _layout


def _region(inferior, pointer):
    """(name, kind flags) of the MemoryRegion at ``pointer``."""
    _get_layout()
    data = bytes(inferior.read_memory(pointer, _layout.mr_span))
    flags = {name: data[offset] != 0 for name, offset in _layout.mr.items()}
    if pointer not in _names:
        name_at = _u64(data, _layout.mr_name)
        try:
            _names[pointer] = (
                gdb.Value(name_at).cast(gdb.lookup_type("char").pointer()).string()
                if name_at
                else None
            )
        except (gdb.error, gdb.MemoryError, UnicodeDecodeError):
            _names[pointer] = None
    return _names[pointer], flags


def _raw_ranges(inferior, view):
    """A FlatView's range table as bytes (``nr`` and ``ranges`` read raw too)."""
    layout = _get_layout()
    head = bytes(inferior.read_memory(view + layout.fv_ranges, 8 + 4))
    ranges, count = _u64(head, 0), min(int.from_bytes(head[8:12], "little"), MAX_RANGES)
    if not ranges or not count:
        return b""
    return bytes(inferior.read_memory(ranges, layout.fr_size * count))


def flat_ranges(view):
    """The ranges of a ``FlatView *`` as the ``flatview`` record's ``ranges``."""
    _get_layout()
    count = min(int(view["nr"]), MAX_RANGES)
    if count == 0:
        return []
    inferior = gdb.selected_inferior()
    size = _layout.fr_size
    table = bytes(inferior.read_memory(int(view["ranges"]), size * count))
    ranges = []
    offsets = _layout.fr
    for i in range(count):
        raw = table[i * size : (i + 1) * size]
        name, flags = _region(inferior, _u64(raw, offsets["mr"]))
        kind = region_kind(flags)
        if kind == "romd" and not raw[offsets["romd_mode"]]:
            kind = "io"  # a ROM device in MMIO mode: its accesses exit
        entry = {
            "start": _u64(raw, offsets["start"]) | (_u64(raw, offsets["start"] + 8) << 64),
            "size": _u64(raw, offsets["size"]) | (_u64(raw, offsets["size"] + 8) << 64),
            "region": name,
            "kind": kind,
        }
        offset = _u64(raw, offsets["offset_in_region"])
        if offset:
            entry["offset_in_region"] = offset
        if raw[offsets["readonly"]] and kind == "ram":
            entry["readonly"] = True
        ranges.append(entry)
    return ranges


class MemoryMap:
    """The records of this module for one session; see the module docstring."""

    def __init__(self, session):
        self.session = session
        self.breakpoints = []
        self.pending = []  # records made before the header was written
        self.spaces = {}  # "memory" / "io" -> the address of its AddressSpace.current_map
        self.raw = {}  # space -> the raw range table last seen
        self.last_view = {}  # space -> the ranges last written
        self.sync_regs = False
        self.vcpus_written = False

    # ----- recording -----

    def now_t(self):
        return round(time.monotonic() - self.session.out._opened, 6)

    def emit(self, record):
        """Write a record (after the pending ones) once the header exists, else keep it."""
        if not self.session.header_written:
            self.pending.append(record)
            return
        self._flush()
        self._write(record)

    def _write(self, record):
        record["seq"] = self.session.out.next_seq()
        first = {"type": record.pop("type"), "seq": record.pop("seq")}
        first.update(record)
        self.session.out.write(first)

    def _flush(self):
        pending, self.pending = self.pending, []
        for record in pending:
            self._write(record)

    # ----- moments (called by the session) -----

    def after_header(self):
        """The header was just written: the changes kept so far, then the views. Never
        raises for QEMU's state (it may be called for a QEMU that died: the end record
        must still be written); a failure is a collector error."""
        self._flush()
        self._guarded(self.snapshot, "discovery")
        if self.session.armed:
            self.on_arm()

    def on_arm(self):
        if not self.session.header_written:
            return  # armed from QEMU's start: after_header does it
        self._guarded(self.snapshot, "armed", True)
        self._guarded(self.enable_sync_regs)

    def _guarded(self, step, *args):
        try:
            step(*args)
        except (gdb.error, gdb.MemoryError, LookupError) as exc:
            self.session.note_error("memory map (%s): %s" % (step.__name__, exc))

    def snapshot(self, cause, force=False):
        for space, symbol in ADDRESS_SPACES:
            try:
                address_space = gdb.parse_and_eval(symbol)
                self.spaces[space] = int(address_space["current_map"].address)
                view = address_space["current_map"]
                if int(view) == 0:
                    continue
                self.view_changed(space, view, cause, force)
            except (gdb.error, gdb.MemoryError) as exc:
                self.session.note_error("flatview of %s: %s" % (symbol, exc))

    def check_views(self):
        """After a commit: write each view whose range table changed."""
        inferior = gdb.selected_inferior()
        for space, where in self.spaces.items():
            view = _u64(bytes(inferior.read_memory(where, 8)), 0)
            if not view:
                continue
            raw = _raw_ranges(inferior, view)
            if raw == self.raw.get(space):
                continue
            self.raw[space] = raw
            pointer = gdb.Value(view).cast(gdb.lookup_type("FlatView").pointer())
            self.view_changed(space, pointer, "update")

    def view_changed(self, space, view, cause, force=False):
        self.raw[space] = _raw_ranges(gdb.selected_inferior(), int(view))
        ranges = flat_ranges(view)
        if not force and self.last_view.get(space) == ranges:
            return
        self.last_view[space] = ranges
        self.emit(
            {
                "type": "flatview",
                "t": self.now_t(),
                "space": space,
                "cause": cause,
                "ranges": ranges,
            }
        )

    def enable_sync_regs(self):
        """Ask KVM to copy each vCPU's registers into its kvm_run at every exit, and say so."""
        if self.vcpus_written:
            return
        records = sync_vcpu_registers()
        if records is None:
            return  # TCG
        self.vcpus_written = True
        for record in records:
            self.sync_regs = self.sync_regs or record.get("sync_regs", False)
            record["t"] = self.now_t()
            record["monotonic_s"] = round(time.monotonic(), 6)
            self.emit(record)



def sync_vcpu_registers():
    """Set KVM_SYNC_X86_REGS in each vCPU's kvm_run.kvm_valid_regs (KVM then copies the
    guest's registers there at every exit; QEMU leaves the field alone): one ``kvm_vcpu``
    record (no seq) per vCPU, saying whether it worked. ``None`` under TCG."""
    try:
        state = gdb.parse_and_eval("kvm_state")
        if int(state) == 0:
            return None
    except gdb.error:
        return None
    records = []
    for cpu in _cpus():
        record = {"type": "kvm_vcpu", "index": int(cpu["cpu_index"])}
        try:
            record["thread_id"] = int(cpu["thread_id"])
        except gdb.error:
            pass
        try:
            run = cpu["kvm_run"]
            if int(run) != 0:
                field = run["kvm_valid_regs"]
                valid = int(field) | KVM_SYNC_X86_REGS
                gdb.selected_inferior().write_memory(
                    int(field.address), valid.to_bytes(8, "little")
                )
                record["sync_regs"] = True
        except (gdb.error, gdb.MemoryError) as exc:
            record["sync_regs"] = False
            record["sync_regs_error"] = str(exc)
        records.append(record)
    return records


MAX_RAM_RANGES = 8  # guest RAM ranges a fast run translates DMA reads through


def guest_ram(limit=MAX_RAM_RANGES):
    """Where guest RAM is in QEMU's memory: ``[start, size, host]`` for each RAM or ROM
    range of ``address_space_memory``'s FlatView (``host``: its RAMBlock's host address plus
    the range's offset in the region), ranges that follow one another in both merged, the
    ``limit`` largest kept, by start. Why: a fast run reads a DMA read's bytes from guest
    memory itself, at the call that copies them (the agent has no place after the copy)."""
    view = gdb.parse_and_eval("address_space_memory.current_map")
    entries = flat_ranges(view)
    table = view["ranges"]
    found = []
    for index, entry in enumerate(entries):
        if entry["kind"] not in ("ram", "rom"):
            continue
        fr = table[index]
        block = fr["mr"]["ram_block"]
        if int(block) == 0:
            continue
        host = int(block["host"]) + int(fr["offset_in_region"])
        if found and found[-1][0] + found[-1][1] == entry["start"] and (
            found[-1][2] + found[-1][1] == host
        ):
            found[-1][1] += entry["size"]
        else:
            found.append([entry["start"], entry["size"], host])
    kept = sorted(found, key=lambda r: -r[1])[:limit]
    return sorted(kept)


def _cpus():
    """Every CPUState of this QEMU (``cpus_queue`` from 8.x on, ``cpus`` before)."""
    for name in ("cpus_queue", "cpus"):
        try:
            cpu = gdb.parse_and_eval(name)["tqh_first"]
        except gdb.error:
            continue
        found = []
        while int(cpu) != 0 and len(found) < MAX_VCPUS:
            found.append(cpu)
            cpu = cpu["node"]["tqe_next"]
        return found
    return []


class SlotBreakpoint(HitBreakpoint):
    """``kvm_set_user_memory_region(kml, slot, new)``: one memslot record per call."""

    def __init__(self, memory_map):
        super().__init__(
            memory_map.session, entry_location(find_function(SLOT_FUNCTION)), enabled=True
        )
        self.memory_map = memory_map

    def on_hit(self):
        frame = gdb.selected_frame()
        slot = frame.read_var("slot")
        size = int(slot["memory_size"])
        try:
            new = bool(frame.read_var("new"))
        except (gdb.error, ValueError):
            new = None
        op = "del" if size == 0 else ("add" if new else "set") if new is not None else "set"
        record = {
            "type": "memslot",
            "t": self.memory_map.now_t(),
            "op": op,
            "slot": int(slot["slot"]),
            "as_id": int(frame.read_var("kml")["as_id"]),
            "start": int(slot["start_addr"]),
            "size": size,
            "flags": int(slot["flags"]),
            "host_addr": "0x%x" % int(slot["ram"]),
        }
        self.memory_map.emit(record)
        return False


class IoEventFdBreakpoint(HitBreakpoint):
    """The KVM listeners' ioeventfd callbacks: one ioeventfd record per call."""

    def __init__(self, memory_map, function_name, space, op):
        super().__init__(
            memory_map.session, entry_location(find_function(function_name)), enabled=True
        )
        self.memory_map = memory_map
        self.space = space
        self.op = op

    def on_hit(self):
        frame = gdb.selected_frame()
        section = frame.read_var("section")
        mr = int(section["mr"])
        record = {
            "type": "ioeventfd",
            "t": self.memory_map.now_t(),
            "op": self.op,
            "space": self.space,
            "addr": int(section["offset_within_address_space"]),
            "size": _u128(section["size"]),
            "match_data": bool(frame.read_var("match_data")),
            "data": int(frame.read_var("data")),
            # QEMU builds this section from the ioeventfd's range alone: its mr is NULL
            # (address_space_add_del_ioeventfds), so the region is named when there is one.
            "region": _region(gdb.selected_inferior(), mr)[0] if mr else None,
        }
        self.memory_map.emit(record)
        return False


class CommitBreakpoint(HitBreakpoint):
    """A ``ret`` of ``memory_region_transaction_commit``: QEMU's memory topology may just have
    changed. Each view's range table is compared as raw bytes with the last one seen (a few
    reads; an unchanged view rebuilt is equal) and decoded and written only when it
    differs. (The KVM listeners' hooks would miss TCG, where system memory and I/O space
    have no listener.)"""

    def __init__(self, memory_map, address):
        super().__init__(memory_map.session, "*%d" % address, enabled=True)
        self.memory_map = memory_map

    def on_hit(self):
        if self.memory_map.session.header_written:
            self.memory_map.check_views()
        return False


def install(session):
    """The memory-map recorder with the breakpoints this QEMU has (none missing is an error:
    a QEMU without KVM support has no slot or ioeventfd listener functions)."""
    memory_map = MemoryMap(session)
    makers = [lambda: SlotBreakpoint(memory_map)]
    try:
        commit = function_block(find_function(COMMIT_FUNCTION))
        for address in return_addresses(commit):
            makers.append(lambda a=address: CommitBreakpoint(memory_map, a))
    except gdb.error:
        pass
    for function_name, (space, op) in IOEVENTFD_FUNCTIONS.items():
        makers.append(
            lambda f=function_name, s=space, o=op: IoEventFdBreakpoint(memory_map, f, s, o)
        )
    for make in makers:
        try:
            memory_map.breakpoints.append(make())
        except (gdb.error, LookupError, AttributeError):
            continue
    return memory_map
