"""'qtrace' interrupt collector: the device raising or lowering its interrupt.

PCI INTx goes through ``void pci_set_irq(PCIDevice *pci_dev, int level)`` (hw/pci/pci.c,
QEMU 2.x to 10.x); message-signalled interrupts through ``msi_notify``/``msix_notify``
(hw/pci/msi.c, msix.c: ``(PCIDevice *dev, unsigned vector)``). Only changes of the INTx
level are recorded (devices call pci_set_irq again with the same level; QEMU ignores it).
"""

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
        vector = int(frame.read_var(self.params[1]))
        return self.session.record_event(
            {"type": "irq", "level": 1, "line": "%s:%d" % (self.line_name, vector)}, frame
        )


def install(session, device_filter):
    collectors = [IntxBreakpoint(session, device_filter)]
    for function_name, line_name in (("msi_notify", "MSI"), ("msix_notify", "MSI-X")):
        try:
            collectors.append(MsiBreakpoint(session, device_filter, function_name, line_name))
        except gdb.GdbError:
            pass  # a QEMU without that function: nothing to record
    return collectors
