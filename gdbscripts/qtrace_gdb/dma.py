"""'qtrace' DMA collector: the device reading or writing guest memory.

Devices reach guest memory through ``pci_dma_rw(PCIDevice *dev, dma_addr_t addr, void *buf,
dma_addr_t len, DMADirection dir, ...)`` (include/hw/pci/pci_device.h in 10.x, pci.h in
7.2), a static inline: at -O0 every C file that uses it has its own copy, so each copy gets
breakpoints. They sit on the ``ret`` instructions: there ``buf`` holds the bytes moved in
either direction. DMA_DIRECTION_TO_DEVICE (0) is a read of guest memory.
"""

import gdb

from qtrace_gdb.base import (
    HitBreakpoint,
    all_functions,
    function_block,
    parameters,
    return_addresses,
)

DMA_TO_DEVICE = 0


class DmaReturn(HitBreakpoint):
    def __init__(self, session, device_filter, params, address):
        self.params = params
        self.filter = device_filter
        super().__init__(session, "*%d" % address)

    def on_hit(self):
        frame = gdb.newest_frame()
        if not self.filter.matches(frame.read_var(self.params[0])):
            return False
        addr = int(frame.read_var(self.params[1]))
        buf = int(frame.read_var(self.params[2]))
        size = int(frame.read_var(self.params[3]))
        direction = int(frame.read_var(self.params[4]))
        cap = self.session.dma_cap_bytes
        data = bytes(gdb.selected_inferior().read_memory(buf, min(size, cap))).hex() if size else ""
        record = {
            "type": "dma",
            "op": "read" if direction == DMA_TO_DEVICE else "write",
            "addr": addr,
            "size": size,
            "data": data,
            "truncated": True if size > cap else None,
        }
        return self.session.record_event(record, frame, at_return=True)


def install(session, device_filter):
    collectors = []
    for symbol in all_functions("pci_dma_rw"):
        block = function_block(symbol)
        params = parameters(block)
        collectors.extend(
            DmaReturn(session, device_filter, params, a) for a in return_addresses(block)
        )
    return collectors
