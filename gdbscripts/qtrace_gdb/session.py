"""The collector's state for one capture: breakpoints, counters, and the trace being written.

One Session exists per gdb. The breakpoints call ``record_exit``/``record_access``; the
host drives ``setup``, ``discover``, ``on_stop`` and ``finish`` through the ``qtrace`` gdb
command. ``setup`` stops QEMU at ``vm_start`` (devices realized, no vCPU run yet);
``discover`` reads the device's regions there, writes the trace header with them and sets
the handler breakpoints.
"""

import time

import gdb

from qtrace_gdb import async_work, discovery, dma, irq, kvm_exit, kvm_host, marker, mmio, pci_config
from qtrace_gdb import memory_map, regs, tcg_flush, tcg_pc, thread_list
from qtrace_gdb.base import (
    DeviceFilter,
    HitBreakpoint,
    all_functions,
    entry_location,
    find_function,
    function_block,
    pc_range,
)
from qtrace_gdb.stacks import StackTable
from qtrace_gdb.trace_out import SCHEMA_VERSION, TraceOut

# Functions whose presence on a stack says something about the access (looked up once).
ACCESSOR_FUNCTIONS = (
    "memory_region_read_accessor",
    "memory_region_write_accessor",
    "memory_region_read_with_attrs_accessor",
    "memory_region_write_with_attrs_accessor",
)
PORT_IO_FUNCTIONS = (
    "kvm_handle_io",
    "cpu_outb",
    "cpu_outw",
    "cpu_outl",
    "cpu_inb",
    "cpu_inw",
    "cpu_inl",
    "helper_outb",
    "helper_outw",
    "helper_outl",
    "helper_inb",
    "helper_inw",
    "helper_inl",
)
MAX_ERRORS_KEPT = 20
# Where discovery stops QEMU: devices exist and are realized, no vCPU has run (QEMU 7.2 to
# 10.x call it once, when the machine starts).
DISCOVERY_FUNCTION = "vm_start"


# What a fast run records (the host decodes it from the tracepoints' frames). The kinds it
# does not record are listed under one key: a kind's own key says it was recorded (a replay
# compares a capture's interrupts when the header has "irq").
_FAST_NOT_RECORDED = (
    "async: the fast collector records the device's register and configuration-space "
    "accesses, its interrupts, its DMA copies through its bus-master address space and, "
    "under KVM, the exits; not its guest-memory mappings (address_space_map), its "
    "MemoryRegionCache accesses (virtqueue rings) or its DMA through address_space_memory"
)
_FAST_NOT_RECORDED_TCG = _FAST_NOT_RECORDED.replace("async:", "async, kvm_exits:", 1)
_FAST_DMA = (
    "fast tracepoints: copies through the device's bus-master address space "
    "(dma_memory_rw_relaxed, at its call of address_space_rw; a read's bytes read from guest "
    "RAM there), "
)


def _quiet_ports(ranges):
    return "port I/O exits on %s are counted, not recorded" % ", ".join(
        "0x%x-0x%x" % (a, b - 1) for a, b in ranges
    )


def _config_device(device_filter, pci_dev):
    """One device of ``device_filter`` as a fast run records its config accesses: its
    PCIDevice pointer, config hooks and label (None: the captured device)."""
    read, write, label = device_filter.hooks(pci_dev)
    return {"pointer": "0x%x" % int(pci_dev), "read": read, "write": write, "device": label}


class DiscoveryStop(HitBreakpoint):
    """Hands QEMU to the host at vm_start, once, so that it can run ``qtrace discover``."""

    def __init__(self, session):
        super().__init__(session, entry_location(find_function(DISCOVERY_FUNCTION)), True)

    def on_hit(self):
        self.enabled = False
        return self.session.request_stop("discover")


class Session:
    def __init__(self, config):
        self.config = config
        self.out = TraceOut(config["trace_path"])
        self.stacks = StackTable(self.out, config["source_root"])
        self.stacks.fast = config["fast_stacks"]
        self.max_hits = config["max_hits"] or 0
        self.dma_cap_bytes = config["dma_cap_bytes"]
        self.quiet_ports = [(int(a), int(a) + int(n)) for a, n in config["quiet_ports"]]
        self.started = time.monotonic()
        self.python_s = 0.0  # time spent in the collectors' stop() (the rest is gdb's)
        self.hits = 0
        self.hits_by = {}  # breakpoint class -> hits: where a capture's stops went
        self.collectors = []
        self.markers = []
        self.armed = False
        self.pending = None
        self.finished = False
        self.errors = []
        self.error_count = 0
        self.write_error = None
        self.quiet_exits = 0
        self.exit_counts = {}
        self.last_exit = {}
        self.vcpu_of = {}
        self.thread_names = {}
        self.reads = mmio.ReadNesting(self.stacks)  # read handlers in flight, per thread
        self.regions = {}
        self.kvm_exec = None
        self.coalesced_flush = None
        self.accessors = []
        self.port_io = []
        self.kvm_watch = []  # coalescing-zone breakpoints (KVM captures), on from QEMU's start
        self.quiet_hooks = []  # on from QEMU's start, recording nothing (the TB-flush hook)
        self.kvm_zones = []
        self.kvm_caps = None
        self.device_filter = DeviceFilter()  # the captured device: irq, dma
        self.config_filter = DeviceFilter()  # and the bridges above it: config accesses
        self.header_written = False
        self.discovery_stop = None
        self.discovered = None
        self.memory_map = None
        self.tcg_pc = None
        self.scope = None  # async_work.DeviceScope, once discovery ran
        self.dma_collector = None

    # ----- setup and control (called by the qtrace command) -----

    def setup(self):
        if self.config["collector"] == "fast":
            # The host records with fast tracepoints: gdb stops QEMU once, at vm_start, for
            # discovery, and no breakpoint of this session may stop it afterwards.
            self.discovery_stop = DiscoveryStop(self)
            return {"breakpoints": 0, "armed": False}
        _skip_python_unwinder_scan()
        self.kvm_exec = pc_range("kvm_cpu_exec")
        self.coalesced_flush = pc_range("kvm_flush_coalesced_mmio_buffer")
        self.accessors = [r for r in map(pc_range, ACCESSOR_FUNCTIONS) if r]
        self.port_io = [r for r in map(pc_range, PORT_IO_FUNCTIONS) if r]
        if self.config["record_pci_config"]:
            self.collectors.extend(pci_config.install(self, self.config_filter))
        if self.config["record_irq"]:
            self.collectors.extend(irq.install(self, self.device_filter))
        if self.config["record_dma"]:
            self.dma_collector = dma.DmaCollector(self)
            self.collectors.extend(self.dma_collector.install())
        for exit_spec in self.config.get("exits", []):
            self.collectors.append(
                kvm_exit.ExitBreakpoint(self, exit_spec["location"], exit_spec["labels"])
            )
        if self.config.get("exits"):
            self.kvm_watch = kvm_host.install(self)
        self.memory_map = memory_map.install(self)  # slots, FlatViews, ioeventfds
        # the guest end (TCG)
        self.tcg_pc = None if self.config.get("exits") else tcg_pc.TcgPc(regs.memory)
        if self.tcg_pc is not None:
            self.quiet_hooks.extend(filter(None, [tcg_flush.install(self, self.tcg_pc)]))
        if self.config.get("arm_on"):
            self.markers.append(marker.Marker(self, self.config["arm_on"]))
        else:
            self.arm()
        self.discovery_stop = DiscoveryStop(self)
        return {"breakpoints": len(self.collectors), "armed": self.armed}

    def discover(self):
        """At the discovery stop: find the device's regions, write the header, break on them.

        Raises discovery.DiscoveryError (the host ends the capture with its message).
        """
        if self.pending != "discover":
            raise discovery.DiscoveryError(
                "QEMU is not stopped at %s (stop asked for: %r)"
                % (DISCOVERY_FUNCTION, self.pending)
            )
        self.pending = None
        regs.setup(self.note_error)
        try:
            self.stacks.own_code = regs.own_code() or self.stacks.own_code
        except OSError as exc:
            self.note_error("QEMU's code range (stack keys run on to their end): %s" % exc)
        found = discovery.discover(self.config["device_path"])
        self.discovered = found
        self.device_filter.add(found.device)
        self.config_filter.add(found.device)
        for bridge in found.bridges:
            self.config_filter.add(bridge, bridge.dereference()["name"].string())
        installed = []
        fast = self.config["collector"] == "fast"
        for site in found.sites if not fast else ():
            installed.extend(mmio.install(self, site, self.armed))
        ranges = []
        for site in found.sites:
            block = function_block(site.function)
            ranges.append((block.start, block.end))
        self.scope = async_work.DeviceScope(found, ranges)
        if self.dma_collector is not None:
            self.dma_collector.set_device(found.bus_master_as, self.scope)
        if self.config["record_async"] and not fast:
            installed.extend(async_work.install(self, self.scope, self.armed))
        self.collectors.extend(installed)
        self._write_header(found.regions)
        if fast and self.config.get("exits"):
            # The fast run decodes each exit's kvm_run itself: KVM copies the guest's
            # registers there from now on (guest_pc), as at the breakpoint collector's
            # arming; the vCPU records say so.
            for record in memory_map.sync_vcpu_registers() or ():
                record["seq"] = self.out.next_seq()
                self.out.write(_ordered(record, ("type", "seq")))
        return {
            # Where the fast run's records go on numbering.
            "next_seq": self.out.next_seq(),
            "regions": len(found.regions),
            "handlers": sorted({site.function.name for site in found.sites}),
            "breakpoints": len(installed),
            "bridges": [b.dereference()["name"].string() for b in found.bridges],
            # What a fast run needs: the MemoryRegion behind each region name (the generic
            # accessors it traces receive it).
            "region_pointers": {"0x%x" % p: n for p, n in found.region_pointers.items()},
            # And the devices whose config accesses it records (the config filter's).
            "config_devices": [
                _config_device(self.config_filter, p) for p in [found.device, *found.bridges]
            ],
            # And its DMA copies (dma.py): the device's bus-master address space, where
            # each copy of dma_memory_rw_relaxed starts, and where guest RAM is.
            "bus_master_as": "0x%x" % found.bus_master_as,
            "dma_copies": ["0x%x" % int(s.value().address)
                           for s in all_functions(dma.COPY_FUNCTION)],
            "guest_ram": memory_map.guest_ram() if fast else [],
        }

    def _write_header(self, regions=()):
        if self.header_written:
            return
        header = dict(self.config["header"])
        header.update(type="header", schema=SCHEMA_VERSION)
        header["arming"] = self._arming_description()
        header["regions"] = list(regions)
        self.out.write(_ordered(header, ("type", "schema")))
        self.header_written = True
        if self.memory_map is not None:
            self.memory_map.after_header()

    def _arming_description(self):
        when = (
            "on the guest's start marker (%s)" % self.config["arm_on"]
            if self.config.get("arm_on")
            else "from QEMU start"
        )
        if self.config["collector"] == "fast":
            description = {
                "device_handlers": "fast tracepoints (gdbserver's in-process agent; QEMU is "
                "not stopped), " + when,
                "pci_config": "fast tracepoints, " + when,
                "irq": "fast tracepoints: INTx level changes, MSI and MSI-X, " + when,
                "dma": _FAST_DMA + when + "; data capped at %d bytes per record"
                % self.dma_cap_bytes,
            }
            if self.config.get("exits"):
                description["kvm_exits"] = "a fast tracepoint before kvm_cpu_exec's switch, " + when
                description["not_recorded"] = _FAST_NOT_RECORDED
            else:
                description["not_recorded"] = _FAST_NOT_RECORDED_TCG
            if self.quiet_ports and self.config.get("exits"):
                description["quiet_ports"] = _quiet_ports(self.quiet_ports)
            return description
        description = {"device_handlers": when, "pci_config": when}
        if self.config["record_irq"]:
            description["irq"] = when
        if self.config["record_dma"]:
            description["dma"] = when + "; data capped at %d bytes per record" % self.dma_cap_bytes
        description["async"] = (
            when
            if self.config["record_async"]
            else "not recorded for this guest (its hooks stop QEMU on every timer and bottom "
            "half of the whole machine)"
        )
        if self.config.get("exits"):
            description["kvm_exits"] = when
        if self.quiet_ports:
            description["quiet_ports"] = _quiet_ports(self.quiet_ports)
        return description

    def arm(self):
        for breakpoint in self.collectors:
            breakpoint.enabled = True
        for breakpoint in self.markers:
            breakpoint.enabled = False
        self.armed = True
        if self.kvm_watch:
            self.kvm_caps = kvm_host.capabilities()
        if self.memory_map is not None:
            self.memory_map.on_arm()

    def request_stop(self, reason):
        self.pending = reason
        return True

    def on_stop(self):
        """Do what a collector asked for when it stopped QEMU; returns what it was."""
        if self.pending == "discover":
            return self.pending  # the host answers it with ``qtrace discover``
        reason, self.pending = self.pending, None
        if reason == "arm":
            self.arm()
        elif reason == "install" and self.scope is not None:
            self.collectors.extend(async_work.install_pending(self, self.scope, self.armed))
        return reason

    def finish(self, status, reason=None):
        if self.finished:
            return
        self.finished = True
        if self.kvm_watch and self.kvm_caps is None:
            self.kvm_caps = kvm_host.capabilities()  # armed from QEMU start, or never armed
        watched = self.collectors + self.markers + self.kvm_watch + self.quiet_hooks
        watched += self.memory_map.breakpoints if self.memory_map is not None else []
        for breakpoint in watched + ([self.discovery_stop] if self.discovery_stop else []):
            try:
                breakpoint.enabled = False
            except gdb.error:
                pass
        end = {
            "type": "end",
            "status": status,
            "accesses": self.out.counts["access"],
            "stacks": len(self.stacks),
            "breakpoint_hits": self.hits,
            "breakpoint_hits_by": dict(sorted(self.hits_by.items())),
            "collector_python_s": round(self.python_s, 3),
            "fast_stacks": self.stacks.fast,
            "fast_stack_misses": self.stacks.fast_misses,
            "elapsed_s": round(time.monotonic() - self.started, 3),
        }
        if reason:
            end["reason"] = reason
        if self.error_count:
            # What the collector noted while it ran (a record it could not write, a reader
            # that fell back to gdb's API): in the trace, not only in gdb.log.
            end["collector_errors"] = self.error_count
            end["collector_error_messages"] = list(self.errors)
        if self.kvm_watch:
            end["kvm"] = {"capabilities": self.kvm_caps, "zones": self.kvm_zones}
        try:
            self._write_header()  # a QEMU that never reached discovery: no regions
            self.out.write(end)
            self.out.close()
        except OSError as exc:  # a full disk: the host repairs the tail and says so
            self.note_error("writing the end record: %s" % exc)
            try:
                self.out.close()
            except OSError:
                pass

    def status(self):
        return {
            "armed": self.armed,
            "accesses": self.out.counts["access"],
            "exits": self.out.counts["exit"],
            "quiet_exits": self.quiet_exits,
            "exit_counts": self.exit_counts,
            "stacks": len(self.stacks),
            "breakpoint_hits": self.hits,
            "collector_python_s": round(self.python_s, 3),
            "fast_stacks": self.stacks.fast,
            "fast_stack_misses": self.stacks.fast_misses,
            "errors": self.error_count,
            "first_errors": self.errors,
            "finished": self.finished,
        }

    def note_error(self, message):
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(message)
            gdb.write("qtrace collector error: %s\n" % message, gdb.STDERR)

    # ----- the hot path (called from breakpoints) -----
    # A write to the trace that fails (a full disk) must end the capture, not be counted
    # as one more collector error per hit while QEMU runs on: the first failure asks the
    # host to stop, with the reason ("write-failed: ..."; qtrace/launch/watch.py).

    def _write_failed(self, exc):
        self.note_error("writing the trace: %s" % exc)
        if self.write_error is not None:
            return False
        self.write_error = str(exc)
        return self.request_stop("write-failed: %s" % exc)

    def record_exit(self, record, frame):
        """Returns True when QEMU must stop for the host (the trace cannot be written)."""
        try:
            self._record_exit(record, frame)
        except OSError as exc:
            return self._write_failed(exc)
        return False

    def record_event(self, record, frame, at_return=False, key=None):
        """An irq or dma record: sequence number and the hit's own stack added.

        ``key``: the stack's cheap key (``StackTable.key_at``) when the breakpoint found it
        itself, ``frame`` then being the gdb frame that stack starts at (an older frame when
        the hook records its caller's stack, irq.py's INTx hook).
        """
        try:
            self._record_event(record, frame, at_return, key)
        except OSError as exc:
            return self._write_failed(exc)
        return False

    def record_access(
        self, spec, op, offset, size, value, frame=None, at_return=False, key=None, thread=None
    ):
        """Records one access; True when QEMU must stop for the host (max hits, write failure).

        The stack is this stop's: the one of ``key`` (``StackTable.key_at``) when the
        breakpoint has it, else found from the registers (``frame``: the newest gdb frame,
        when the caller has one; gdb's unwinder uses it for a new stack). ``thread``: the
        stopped gdb.InferiorThread, when the caller has it.
        """
        try:
            return self._record_access(spec, op, offset, size, value, frame, at_return, key, thread)
        except OSError as exc:
            return self._write_failed(exc)

    def _record_exit(self, record, frame):
        thread = gdb.selected_thread().num
        if record.get("vcpu") is not None:
            self.vcpu_of[thread] = record["vcpu"]
        reason = record["reason"]
        self.exit_counts[reason] = self.exit_counts.get(reason, 0) + 1
        port = record.get("port")
        if port is not None and any(a <= port < b for a, b in self.quiet_ports):
            self.quiet_exits += 1
            self.last_exit[thread] = None
            return
        record["seq"] = self.out.next_seq()
        record["stack"] = self.stacks.current(frame).id
        record["thread"] = self.thread_name()
        self.out.write(_ordered(record, ("type", "seq", "reason")))
        self.last_exit[thread] = record

    def _record_event(self, record, frame, at_return, key):
        record["seq"] = self.out.next_seq()
        if key is None:
            record["stack"] = self.stacks.current(frame, at_return).id
        else:
            record["stack"] = self.stacks.lookup(key, frame).id
        record["thread"] = self.thread_name()
        self.out.write(_ordered(record, ("type", "seq")))

    def _record_access(self, spec, op, offset, size, value, frame, at_return, key, gdb_thread):
        if key is None:
            info = self.stacks.current(frame, at_return)
        else:
            info = self.stacks.lookup(key, frame)
        facts = self._facts(info)
        gdb_thread = gdb_thread or gdb.selected_thread()
        thread = gdb_thread.num
        # A write KVM coalesced (no exit of its own) is replayed by QEMU at the start of a
        # later exit's handling; it must not be credited to that unrelated exit.
        coalesced = facts["coalesced"]
        exit_record = self.last_exit.get(thread) if facts["under_kvm"] and not coalesced else None
        # The same handler can serve a port I/O BAR and (through an alias) a memory BAR, so
        # the space is decided per access: from the KVM exit, else from the stack (TCG).
        space = spec.get("space") or "auto"
        if space != "pci-config":
            if exit_record is not None:
                space = "pio" if exit_record["reason"] == "KVM_EXIT_IO" else "mmio"
            else:
                space = "pio" if facts["port_io"] else "mmio"
        seq = self.out.next_seq()
        exit_seq = exit_record["seq"] if exit_record else None
        addr = None
        if exit_record is not None and space != "pci-config":
            addr = exit_record.get("phys_addr", exit_record.get("port"))
        guest_pc = None
        if self.tcg_pc is not None and not facts["under_kvm"]:
            guest_pc = self.tcg_pc.guest_pc(info.pcs, frame, thread)
        region = spec.get("region") or facts["region"]
        vcpu = self._vcpu(thread)
        name = self.thread_name(gdb_thread)
        coalesced = True if coalesced else None

        def build(v):
            return {
                "type": "access",
                "seq": v[0],
                "op": op,
                "space": space,
                "region": region,
                "offset": v[1],
                "size": v[2],
                "value": v[3],
                "handler": spec.get("func"),
                "exit_seq": v[4],
                "stack": info.id,
                "vcpu": vcpu,
                "thread": name,
                "coalesced": coalesced,
                "device": spec.get("device"),
                "addr": v[5],
                "guest_pc": v[6],
            }

        shape = (
            op,
            space,
            region,
            spec.get("func"),
            info.id,
            vcpu,
            name,
            coalesced,
            spec.get("device"),
        )
        varying = (seq, offset, size, value, exit_seq, addr, guest_pc)
        self.out.write_shaped("access", shape, build, varying)
        if self.max_hits and self.out.counts["access"] >= self.max_hits:
            return self.request_stop("max-hits")
        return False

    def _facts(self, info):
        """Facts about a stack, computed once per distinct stack (while its frames exist).

        The region name is read from the memory API accessor's ``mr`` on the stack's first
        hit: one stack, one region (we capture one device instance).
        """
        facts = info.facts
        if "under_kvm" in facts:
            return facts
        frames = facts.pop("frames", None) or self.stacks.walk()
        pcs = info.pcs
        facts["under_kvm"] = self.kvm_exec is not None and _on_stack(pcs, [self.kvm_exec])
        facts["coalesced"] = self.coalesced_flush is not None and _on_stack(
            pcs, [self.coalesced_flush]
        )
        facts["port_io"] = _on_stack(pcs, self.port_io)
        facts["region"] = self._region_name(frames, pcs)
        return facts

    def _region_name(self, frames, pcs):
        for frame, pc in zip(frames, pcs):
            if any(a <= pc < b for a, b in self.accessors):
                mr = frame.read_var("mr")
                key = int(mr)
                if key not in self.regions:
                    self.regions[key] = mr.dereference()["name"].string()
                return self.regions[key]
        return None

    def thread_name(self, thread=None):
        """The host thread this hit runs on, by the name QEMU gave it (``-name
        debug-threads=on``: ``CPU 0/KVM``, ``IO iothread0``, ``worker``, ...); QEMU's first
        thread, which runs the main loop and keeps the program's name, is ``main``. Cached
        per gdb thread: QEMU names a thread when it starts, before it does any work."""
        thread = thread or gdb.selected_thread()
        name = self.thread_names.get(thread.num)
        if name is None:
            name = thread_list.thread_label(thread)
            self.thread_names[thread.num] = name
        return name

    def _vcpu(self, thread):
        if thread not in self.vcpu_of:
            try:
                self.vcpu_of[thread] = int(gdb.parse_and_eval("current_cpu")["cpu_index"])
            except (gdb.error, gdb.MemoryError):
                self.vcpu_of[thread] = None
        return self.vcpu_of[thread]


def _skip_python_unwinder_scan():
    """gdb asks Python for frame unwinders on every frame it builds, scanning every objfile
    (QEMU loads dozens of libraries) even when none is registered, as here. With none
    registered the answer is always "none", so skip the scan (a measured hot spot)."""
    registered = list(gdb.frame_unwinders) + list(gdb.current_progspace().frame_unwinders)
    for objfile in gdb.objfiles():
        registered.extend(objfile.frame_unwinders)
    if not registered and hasattr(gdb, "_execute_unwinders"):
        gdb._execute_unwinders = lambda pending_frame: None


def _on_stack(pcs, ranges):
    return any(a <= pc < b for pc in pcs for a, b in ranges)


def _ordered(record, first):
    out = {k: record[k] for k in first if k in record}
    out.update((k, v) for k, v in record.items() if k not in out)
    return out
