"""'qtrace' PCI config-space collector: every config access that reaches the device.

All config accesses, whether through ports 0xCF8/0xCFC (pci_data_read/write) or through
PCIe MMCONFIG/ECAM (pcie_mmcfg_data_read/write), funnel into two functions of
hw/pci/pci_host.c, which then call the hooks the device class set (``config_read``,
``config_write``). Signatures (QEMU 2.x to 10.x):
  uint32_t pci_host_config_read_common(PCIDevice *pci_dev, uint32_t addr, uint32_t limit,
                                       uint32_t len)
  void pci_host_config_write_common(PCIDevice *pci_dev, uint32_t addr, uint32_t limit,
                                    uint32_t val, uint32_t len)
Only the captured device's accesses are recorded, and those to the bridges above it (a
PCIe root port): each says which device it reached (``device``: the bridge's QOM type).
"""

import gdb

from qtrace_gdb.base import (
    HitBreakpoint,
    entry_location,
    find_function,
    function_block,
    parameters,
    return_addresses,
)
from qtrace_gdb.mmio import size_mask

READ_FUNCTION = "pci_host_config_read_common"
WRITE_FUNCTION = "pci_host_config_write_common"


class ConfigWrite(HitBreakpoint):
    def __init__(self, session, device_filter):
        symbol = find_function(WRITE_FUNCTION)
        self.params = parameters(function_block(symbol))
        self.filter = device_filter
        super().__init__(session, entry_location(symbol))

    def on_hit(self):
        frame = gdb.newest_frame()
        pci_dev = frame.read_var(self.params[0])
        hooks = self.filter.hooks(pci_dev)
        if hooks is None:
            return False
        addr, value, size = (
            int(frame.read_var(p)) for p in (self.params[1], self.params[3], self.params[4])
        )
        spec = {"func": hooks[1], "space": "pci-config", "region": "pci-config", "device": hooks[2]}
        return self.session.record_access(spec, "write", addr, size, value & size_mask(size), frame)


class ConfigRead(HitBreakpoint):
    def __init__(self, session, device_filter, address, params):
        self.params = params
        self.filter = device_filter
        super().__init__(session, "*%d" % address)

    def on_hit(self):
        frame = gdb.newest_frame()
        pci_dev = frame.read_var(self.params[0])
        hooks = self.filter.hooks(pci_dev)
        if hooks is None:
            return False
        addr, size = int(frame.read_var(self.params[1])), int(frame.read_var(self.params[3]))
        value = int(frame.read_register("rax")) & size_mask(size)
        spec = {"func": hooks[0], "space": "pci-config", "region": "pci-config", "device": hooks[2]}
        return self.session.record_access(spec, "read", addr, size, value, frame, at_return=True)


def install(session, device_filter):
    read_symbol = find_function(READ_FUNCTION)
    block = function_block(read_symbol)
    params = parameters(block)
    reads = [ConfigRead(session, device_filter, a, params) for a in return_addresses(block)]
    return reads + [ConfigWrite(session, device_filter)]
