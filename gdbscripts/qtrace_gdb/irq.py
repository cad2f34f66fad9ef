"""'qtrace' interrupt collector: the device raising or lowering its interrupt.

PCI INTx goes through ``void pci_set_irq(PCIDevice *pci_dev, int level)`` (hw/pci/pci.c,
QEMU 2.x to 10.x); message-signalled interrupts through ``msi_notify``/``msix_notify``
(hw/pci/msi.c, msix.c: ``(PCIDevice *dev, unsigned vector)``). Only changes of the INTx
level are recorded (devices call pci_set_irq again with the same level; QEMU ignores it).
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


class IntxBreakpoint(HitBreakpoint):
    def __init__(self, session, device_filter):
        symbol = find_function("pci_set_irq")
        self.params = parameters(function_block(symbol))
        self.filter = device_filter
        self.levels = {}
        super().__init__(session, entry_location(symbol))

    def on_hit(self):
        frame = gdb.newest_frame()
        pci_dev = frame.read_var(self.params[0])
        if not self.filter.matches(pci_dev):
            return False
        level = int(frame.read_var(self.params[1]))
        key = int(pci_dev)
        if self.levels.get(key, 0) == level:
            return False
        self.levels[key] = level
        return self.session.record_event({"type": "irq", "level": level, "line": "INTx"}, frame)


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
