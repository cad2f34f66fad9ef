"""'qtrace' interrupt collector: the device raising or lowering its interrupt.

PCI INTx goes through ``void pci_set_irq(PCIDevice *pci_dev, int level)`` (hw/pci/pci.c,
QEMU 2.x to 10.x), which hands the level to ``pci_irq_handler``; only changes of the INTx
level are recorded (devices call pci_set_irq again with the same level; QEMU ignores it),
and the hook stops QEMU only there (:class:`IntxBreakpoint`). Message-signalled interrupts
go through ``msi_notify``/``msix_notify`` (hw/pci/msi.c, msix.c:
``(PCIDevice *dev, unsigned vector)``).
A message-signalled interrupt's record adds the message (``address``, ``data``) read from
the device's MSI-X table (``PCIDevice.msix_table``, 16 bytes a vector, and its pending bits
``msix_pba``) or its MSI capability in config space (``config`` + ``msi_cap``: flags at +2,
address at +4, data at +8 or, for 64-bit addresses, +12; the vector is added to the data).
"""

import struct

import gdb

from qtrace_gdb.base import (
    HitBreakpoint,
    entry_location,
    find_function,
    function_block,
    parameters,
)
from qtrace_gdb.regs import RBP, memory, registers


class IntxBreakpoint(HitBreakpoint):
    """A change of the captured device's INTx level made by ``pci_set_irq``.

    ``pci_set_irq(dev, level)`` calls ``pci_irq_handler(dev, pin, level)``, which returns at
    once when the pin already has that level and otherwise stores it with
    ``pci_set_irq_state(dev, pin, level)`` (then updates STATUS.INTERRUPT and, unless
    COMMAND.INTX_DISABLE is set, passes the change up the bus). The breakpoint is on
    ``pci_set_irq_state`` (a static inline of hw/pci/pci.c, a function of its own at -O0
    with its arguments on the stack; QEMU 7.2, 10.0 and 10.2 alike), so QEMU stops only
    for a change: a device that sets an unchanged level at every register read (a NIC's
    interrupt cause register, read in a polling loop) costs no stop, where a breakpoint on
    ``pci_set_irq`` stopped at every call to drop it (measured on the firmware guest's
    polling: 2.1 stops per access before, 1.06 after; reports/benchmarks.md).

    The record is the one the ``pci_set_irq`` hook wrote: type ``irq``, line ``INTx``, the
    new level, and the stack of that ``pci_set_irq`` call, its frames[0] ``pci_set_irq``
    (tests and the layer rules expect it there): the two frames below it, pci_irq_handler
    and pci_set_irq_state, are left out, being the same at every change and PCI's core
    rather than the device. Frame 0's line is now that of the call to pci_irq_handler (the
    return address) rather than pci_set_irq's first line. The stack's cheap key is the
    frame-pointer chain from pci_set_irq's frame, found from pci_set_irq_state's two
    saved (rbp, return address) pairs, which also show who called: only a change that
    ``pci_set_irq`` made is recorded, as before. QEMU's other paths to pci_irq_handler are
    not: ``pci_device_deassert_intx`` (device reset, MSI or MSI-X being enabled), a
    ``qemu_irq`` from ``pci_allocate_irq`` raised with ``qemu_set_irq``, and the
    migration loader's own call of pci_set_irq_state.

    What differs from the old hook, which compared the level with the last one it had seen
    for the device (0 at first): a change is now QEMU's own (irq_state), so after one of
    those other paths moved the pin, or when the hook was armed with the pin high, the old
    hook recorded a level that was no change and missed a change, and this one records
    exactly the changes. A change while COMMAND.INTX_DISABLE is set is recorded, as it was:
    QEMU stores the level then too (STATUS.INTERRUPT shows it) and only keeps it off the
    bus.
    """

    def __init__(self, session, device_filter):
        symbol = find_function("pci_set_irq_state", "hw/pci/pci.c")
        self.params = parameters(function_block(symbol))  # dev, irq_num, level
        self.handler = _pc_range("pci_irq_handler")
        self.set_irq = _pc_range("pci_set_irq")
        self.filter = device_filter
        super().__init__(session, entry_location(symbol))

    def on_hit(self):
        # After the prologue rbp is pci_set_irq_state's frame: its saved pair gives
        # pci_irq_handler's frame and the return address into it, whose pair gives
        # pci_set_irq's frame and the return address into that (-O0 keeps frame pointers).
        handler_rbp, into_handler = _PAIR.unpack(memory(registers()[RBP], 16))
        set_irq_rbp, into_set_irq = _PAIR.unpack(memory(handler_rbp, 16))
        if not (_within(into_handler, self.handler) and _within(into_set_irq, self.set_irq)):
            return False  # another path to pci_irq_handler (see the class docstring)
        frame = gdb.newest_frame()
        if not self.filter.matches(frame.read_var(self.params[0])):
            return False
        level = int(frame.read_var(self.params[2]))
        key = self.session.stacks.key_at([into_set_irq], set_irq_rbp)
        record = {"type": "irq", "level": level, "line": "INTx"}
        return self.session.record_event(record, frame.older().older(), key=key)


_PAIR = struct.Struct("<QQ")  # saved rbp, return address (x86-64)


def _pc_range(name):
    block = function_block(find_function(name, "hw/pci/pci.c"))
    return block.start, block.end


def _within(pc, pc_range):
    return pc_range[0] <= pc < pc_range[1]


MSIX_ENTRY_SIZE = 16  # address low, address high, data, vector control (PCI spec)
MSIX_VECTOR_MASKED = 0x1
MSI_FLAGS_64BIT = 0x80


class MsiBreakpoint(HitBreakpoint):
    def __init__(self, session, device_filter, function_name, line_name):
        symbol = find_function(function_name)
        self.params = parameters(function_block(symbol))
        self.filter = device_filter
        self.line_name = line_name
        super().__init__(session, entry_location(symbol))

    def on_hit(self):
        frame = gdb.newest_frame()
        if not self.filter.matches(frame.read_var(self.params[0])):
            return False
        device = frame.read_var(self.params[0])
        vector = int(frame.read_var(self.params[1]))
        record = {"type": "irq", "level": 1, "line": "%s:%d" % (self.line_name, vector)}
        try:
            record.update(self.message(device, vector))
        except (gdb.error, gdb.MemoryError) as exc:
            self.session.note_error("reading the %s message: %s" % (self.line_name, exc))
        return self.session.record_event(record, frame)

    def message(self, device, vector):
        """The message's address and data and whether it is masked, as the device holds them
        now (a masked MSI-X vector is not sent: its pending bit is set instead)."""
        inferior = gdb.selected_inferior()
        if self.line_name == "MSI-X":
            entry = int(device["msix_table"]) + vector * MSIX_ENTRY_SIZE
            lo, hi, data, control = struct.unpack("<IIII", inferior.read_memory(entry, 16))
            pending = bytes(inferior.read_memory(int(device["msix_pba"]) + vector // 8, 1))[0]
            return {
                "address": (hi << 32) | lo,
                "data": data,
                "masked": bool(control & MSIX_VECTOR_MASKED)
                or bool(int(device["msix_function_masked"])),
                "pending": bool(pending & (1 << (vector % 8))),
            }
        cap = int(device["msi_cap"])
        config = int(device["config"])
        flags, lo = struct.unpack("<HI", inferior.read_memory(config + cap + 2, 6))
        is_64 = bool(flags & MSI_FLAGS_64BIT)
        hi = struct.unpack("<I", inferior.read_memory(config + cap + 8, 4))[0] if is_64 else 0
        data_at = config + cap + (12 if is_64 else 8)
        data = struct.unpack("<H", inferior.read_memory(data_at, 2))[0]
        return {"address": (hi << 32) | lo, "data": data + vector}


def install(session, device_filter):
    collectors = [IntxBreakpoint(session, device_filter)]
    for function_name, line_name in (("msi_notify", "MSI"), ("msix_notify", "MSI-X")):
        try:
            collectors.append(MsiBreakpoint(session, device_filter, function_name, line_name))
        except gdb.GdbError:
            pass  # a QEMU without that function: nothing to record
    return collectors
