"""'qtrace' asynchronous-work collector: the device's work that no register access's stack shows.

Devices hand work to other threads and to later: ioeventfds (KVM completes the guest's
doorbell write and signals an eventfd; QEMU's handler for it runs on the main loop or an
iothread), bottom halves, timers, irqfds. What makes a piece of that work the device's is
found, like the handlers, from the running QEMU with no device-specific code:

- an ioeventfd added to one of the device's MemoryRegions (``memory_region_add_eventfd``);
- an fd handler registered for such a notifier, or registered while the device's code is on
  the stack (``aio_set_event_notifier``);
- a bottom half scheduled (``aio_bh_enqueue``) or a timer armed (``timer_mod_ns_locked``)
  whose ``opaque`` is an object the device's callbacks receive, whose re-entrancy guard is
  the device's (QEMU 8.1+), or while the device's code is on the stack;
- an irqfd assigned (``kvm_irqchip_assign_irqfd``) while the device's code is on the stack,
  and each later ``event_notifier_set`` on it (QEMU raising the interrupt through KVM).

"The device's code is on the stack": a PC of the stack (its cheap frame-pointer chain) lies
in a discovered handler or in a callback already found to be the device's. Each callback
found (a bottom half's, a timer's, an fd handler) gets a breakpoint at its entry, filtered
by its ``opaque``, so its runs are recorded with their own stacks and threads; a breakpoint
cannot be created inside another's ``stop()``, so the collector asks the host for a stop
("install") and creates it there. Records are ``async`` (``kind``: ``ioeventfd``,
``fd-handler``, ``bh``, ``timer``, ``irqfd``; ``op``: what happened).

Signatures (util/async.c, util/qemu-timer.c, util/aio-posix.c, system/memory.c,
accel/kvm/kvm-all.c; the same in QEMU 7.2 and 10.x):
  static void aio_bh_enqueue(QEMUBH *bh, unsigned new_flags)
  static bool timer_mod_ns_locked(QEMUTimerList *timer_list, QEMUTimer *ts, int64_t expire)
  void aio_set_event_notifier(AioContext *ctx, EventNotifier *notifier,
                              EventNotifierHandler *io_read, ...)
  void memory_region_add_eventfd(MemoryRegion *mr, hwaddr addr, unsigned size,
                                 bool match_data, uint64_t data, EventNotifier *e)
  (memory_region_del_eventfd: the same parameters)
  static int kvm_irqchip_assign_irqfd(KVMState *s, EventNotifier *event,
                                      EventNotifier *resample, int virq, bool assign)
  int event_notifier_set(EventNotifier *e)
"""

import gdb

from qtrace_gdb.base import (
    HitBreakpoint,
    entry_location,
    find_function,
    function_block,
    function_symbol,
    parameters,
)


class DeviceScope:
    """What belongs to the captured device: objects, regions, notifiers and code ranges."""

    def __init__(self, found, handler_ranges):
        self.device = int(found.device)
        self.opaques = set(found.opaques) | {self.device}
        self.regions = dict(found.region_pointers)  # MemoryRegion * -> name
        self.guard = found.reentrancy_guard  # &DeviceState.mem_reentrancy_guard, or None
        self.ranges = list(handler_ranges)  # [(start, end)] of the device's code
        self.notifiers = {}  # EventNotifier * -> the ioeventfd's description
        self.irqfds = {}  # EventNotifier * -> GSI
        self.watched = {}  # callback address -> {opaque: kind}
        self.pending = []  # (kind, symbol) waiting for a breakpoint at the host's stop
        self.enable_later = []  # hooks to turn on at the host's stop
        self.notifier_hook = None

    def code_on_stack(self, pcs):
        return any(a <= pc < b for pc in pcs for a, b in self.ranges)

    def watch(self, kind, callback, opaque):
        """Note a callback of the device's; True when it needs a new breakpoint."""
        symbol = function_symbol(callback)
        if symbol is None:
            return False
        address = int(symbol.value().address)
        opaques = self.watched.get(address)
        new = opaques is None
        if new:
            opaques = self.watched[address] = {}
            self.pending.append((kind, symbol))
            block = function_block(symbol)
            self.ranges.append((block.start, block.end))
        opaques[int(opaque)] = kind
        self.opaques.add(int(opaque))
        return new


class _AsyncBreakpoint(HitBreakpoint):
    function_name = None

    def __init__(self, session, scope, enabled):
        symbol = find_function(self.function_name)
        self.scope = scope
        self.params = parameters(function_block(symbol))
        super().__init__(session, entry_location(symbol), enabled)

    def arg(self, frame, index):
        return frame.read_var(self.params[index])

    def in_device_code(self, frame):
        return self.scope.code_on_stack(self.session.stacks.pcs(frame))

    def record(self, frame, fields):
        record = {"type": "async"}
        record.update(fields)
        stop = self.session.record_event(record, frame)
        if self.scope.pending or self.scope.enable_later:
            return self.session.request_stop("install") or stop
        return stop


class EventfdAdd(_AsyncBreakpoint):
    function_name = "memory_region_add_eventfd"
    op = "add"

    def on_hit(self):
        frame = gdb.newest_frame()
        region = self.scope.regions.get(int(self.arg(frame, 0)))
        if region is None:
            return False
        notifier = int(self.arg(frame, 5))
        fields = {
            "kind": "ioeventfd",
            "op": self.op,
            "region": region,
            "offset": int(self.arg(frame, 1)),
            "size": int(self.arg(frame, 2)),
            "match_data": bool(self.arg(frame, 3)),
            "data": int(self.arg(frame, 4)),
            "notifier": "0x%x" % notifier,
        }
        if self.op == "add":
            self.scope.notifiers[notifier] = fields
        else:
            self.scope.notifiers.pop(notifier, None)
        return self.record(frame, fields)


class EventfdDel(EventfdAdd):
    function_name = "memory_region_del_eventfd"
    op = "del"


class HandlerRegister(_AsyncBreakpoint):
    function_name = "aio_set_event_notifier"

    def on_hit(self):
        frame = gdb.newest_frame()
        notifier = self.arg(frame, 1)
        io_read = self.arg(frame, 2)
        if int(notifier) not in self.scope.notifiers and not self.in_device_code(frame):
            return False
        fields = {
            "kind": "fd-handler",
            "op": "register" if int(io_read) else "unregister",
            "notifier": "0x%x" % int(notifier),
        }
        if int(io_read):
            symbol = function_symbol(io_read)
            fields["callback"] = symbol.name if symbol else "0x%x" % int(io_read)
            self.scope.watch("fd-handler", io_read, notifier)
        return self.record(frame, fields)


class BhSchedule(_AsyncBreakpoint):
    function_name = "aio_bh_enqueue"

    def __init__(self, session, scope, enabled):
        super().__init__(session, scope, enabled)
        self.deleted_flag = _bh_deleted_flag()  # looked up once, not on every enqueue

    def on_hit(self):
        frame = gdb.newest_frame()
        bh = self.arg(frame, 0).dereference()
        opaque = int(bh["opaque"])
        if not self._owned(bh, opaque, frame):
            return False
        symbol = function_symbol(bh["cb"])
        # qemu_bh_delete enqueues too, with BH_DELETED: the bottom half is freed, not run.
        deleted = bool(int(self.arg(frame, 1)) & self.deleted_flag)
        if not deleted:
            self.scope.watch("bh", bh["cb"], opaque)
        name = bh["name"].string() if int(bh["name"]) else None
        return self.record(
            frame,
            {
                "kind": "bh",
                "op": "delete" if deleted else "schedule",
                "callback": symbol.name if symbol else None,
                "name": name,
                "object": "0x%x" % int(self.arg(frame, 0)),
            },
        )

    def _owned(self, bh, opaque, frame):
        if self.scope.guard is not None:
            try:
                if int(bh["reentrancy_guard"]) == self.scope.guard:
                    return True
            except gdb.error:
                pass
        if opaque == 0:
            # QEMU's own wake-ups (the main loop's notify bottom half, scheduled when any
            # timer is armed) have no object: not the device's work even if it caused them.
            return False
        return opaque in self.scope.opaques or self.in_device_code(frame)


def _bh_deleted_flag():
    """util/async.c's BH_DELETED (an enum constant; 1 << 2 in QEMU 7.2 to 10.x)."""
    try:
        return int(gdb.parse_and_eval("BH_DELETED"))
    except gdb.error:
        return 1 << 2


class TimerArm(_AsyncBreakpoint):
    function_name = "timer_mod_ns_locked"

    def on_hit(self):
        frame = gdb.newest_frame()
        timer = self.arg(frame, 1).dereference()
        opaque = int(timer["opaque"])
        if opaque == 0 or (opaque not in self.scope.opaques and not self.in_device_code(frame)):
            return False
        symbol = function_symbol(timer["cb"])
        self.scope.watch("timer", timer["cb"], opaque)
        return self.record(
            frame,
            {
                "kind": "timer",
                "op": "arm",
                "callback": symbol.name if symbol else None,
                "expire_ns": int(self.arg(frame, 2)),
                "object": "0x%x" % int(self.arg(frame, 1)),
            },
        )


class IrqfdAssign(_AsyncBreakpoint):
    function_name = "kvm_irqchip_assign_irqfd"

    def on_hit(self):
        frame = gdb.newest_frame()
        if not self.in_device_code(frame):
            return False
        notifier = int(self.arg(frame, 1))
        gsi = int(self.arg(frame, 3))
        assign = bool(self.arg(frame, 4))
        if assign:
            self.scope.irqfds[notifier] = gsi
            # event_notifier_set runs for every event-loop wake-up in QEMU: its hook is off
            # until the device has an irqfd (turned on at the host stop this asks for).
            if self.scope.notifier_hook is not None and not self.scope.notifier_hook.enabled:
                self.scope.enable_later.append(self.scope.notifier_hook)
        else:
            self.scope.irqfds.pop(notifier, None)
        return self.record(
            frame,
            {
                "kind": "irqfd",
                "op": "assign" if assign else "deassign",
                "gsi": gsi,
                "notifier": "0x%x" % notifier,
            },
        )


class NotifierSet(_AsyncBreakpoint):
    """QEMU signalling an irqfd: KVM injects the interrupt, QEMU's irqchip code never runs."""

    function_name = "event_notifier_set"

    def on_hit(self):
        frame = gdb.newest_frame()
        notifier = int(self.arg(frame, 0))
        gsi = self.scope.irqfds.get(notifier)
        if gsi is None:
            return False
        fields = {"kind": "irqfd", "op": "signal", "gsi": gsi, "notifier": "0x%x" % notifier}
        return self.record(frame, fields)


class CallbackRun(HitBreakpoint):
    """The entry of a callback found to be the device's: one of its runs."""

    def __init__(self, session, scope, kind, symbol, enabled):
        self.scope = scope
        self.kind = kind
        self.address = int(symbol.value().address)
        self.function = symbol.name
        self.params = parameters(function_block(symbol))
        super().__init__(session, entry_location(symbol), enabled)

    def on_hit(self):
        frame = gdb.newest_frame()
        opaques = self.scope.watched.get(self.address, {})
        if not self.params:
            return False
        kind = opaques.get(int(frame.read_var(self.params[0])))
        if kind is None:
            return False
        record = {"type": "async", "kind": kind, "op": "run", "callback": self.function}
        return self.session.record_event(record, frame)


HOOKS = (
    (EventfdAdd, "ioeventfd"),
    (EventfdDel, "ioeventfd"),
    (HandlerRegister, "fd-handler"),
    (BhSchedule, "bh"),
    (TimerArm, "timer"),
    (IrqfdAssign, "irqfd"),
)
"""Each hook and the ``kind`` of the records it finds (a callback's runs are recorded when
the hook of its kind found it)."""


def recorded_kinds(config):
    """The kinds ``record_async`` asks for: ``true`` all of them, a list only those (a guest
    plan may keep the hooks that stop QEMU on every bottom half of the machine off)."""
    wanted = config["record_async"]
    kinds = {kind for _, kind in HOOKS}
    return kinds if wanted is True else kinds & set(wanted or ())


def install(session, scope, enabled):
    """The hooks that find the device's asynchronous work of the kinds the configuration
    asks for (absent functions are skipped). The irqfd signal hook is created off and left
    out of the armed set: it is turned on when the device gets its first irqfd."""
    kinds = recorded_kinds(session.config)
    hooks = []
    for hook, kind in HOOKS:
        if kind not in kinds:
            continue
        try:
            hooks.append(hook(session, scope, enabled))
        except gdb.GdbError:
            pass  # this QEMU has no such function (a build without KVM, say)
    if "irqfd" in kinds:
        try:
            scope.notifier_hook = NotifierSet(session, scope, False)
        except gdb.GdbError:
            pass
    return hooks


def install_pending(session, scope, enabled):
    """Breakpoints for the callbacks found since the last stop (run at a host stop)."""
    created = []
    while scope.enable_later:
        hook = scope.enable_later.pop()
        hook.enabled = enabled
        created.append(hook)  # now one of the collectors: armed, and turned off at the end
    while scope.pending:
        kind, symbol = scope.pending.pop(0)
        created.append(CallbackRun(session, scope, kind, symbol, enabled))
    return created
