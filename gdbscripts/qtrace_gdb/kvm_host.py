"""What the host's KVM offered this QEMU, and the coalescing zones QEMU registered with it.

Whether a guest write exits to QEMU or is buffered by KVM depends on the host: QEMU asks the
kernel for KVM_CAP_COALESCED_MMIO and KVM_CAP_COALESCED_PIO at start-up
(``kvm_state->coalesced_mmio``/``coalesced_pio``) and, whenever a region with coalescing
ranges is mapped, registers each range through its KVM memory listener
(``kvm_coalesce_mmio_region``/``kvm_coalesce_pio_add`` and their removals; same signatures in
QEMU 7.2 to 10.2). So a report can say what *this* host did instead of a general rule.

The zone breakpoints are on from QEMU's start (the firmware maps the BARs before the guest's
start marker arms the other collectors); they are rare, record no stack, and never stop.
"""

import gdb

from qtrace_gdb.base import HitBreakpoint, entry_location, find_function

# listener function -> (space, what it does)
ZONE_FUNCTIONS = {
    "kvm_coalesce_mmio_region": ("mmio", "add"),
    "kvm_uncoalesce_mmio_region": ("mmio", "del"),
    "kvm_coalesce_pio_add": ("pio", "add"),
    "kvm_coalesce_pio_del": ("pio", "del"),
}


class ZoneBreakpoint(HitBreakpoint):
    def __init__(self, session, function_name, space, op):
        super().__init__(session, entry_location(find_function(function_name)), enabled=True)
        self.space = space
        self.op = op

    def on_hit(self):
        frame = gdb.selected_frame()
        zone = {
            "op": self.op,
            "space": self.space,
            "start": int(frame.read_var("start")),
            "size": int(frame.read_var("size")),
        }
        region = _section_region_name(frame)
        if region:
            zone["region"] = region
        self.session.kvm_zones.append(zone)
        return False


def _section_region_name(frame):
    """The name of the MemoryRegion the zone belongs to (the parameter is ``secion`` in the
    MMIO listener functions of QEMU 7.2-10.2, ``section`` in the PIO ones)."""
    for name in ("section", "secion"):
        try:
            return frame.read_var(name)["mr"]["name"].string()
        except (gdb.error, ValueError):
            continue
    return None


def install(session):
    """Zone breakpoints for the listener functions this QEMU has (none without KVM support)."""
    points = []
    for function_name, (space, op) in ZONE_FUNCTIONS.items():
        try:
            points.append(ZoneBreakpoint(session, function_name, space, op))
        except (gdb.error, LookupError, AttributeError):
            continue
    return points


def capabilities():
    """KVM's answers to QEMU's capability checks, or None when KVM is not in use."""
    try:
        state = gdb.parse_and_eval("kvm_state")
        if int(state) == 0:
            return None
        return {
            "coalesced_mmio": int(state["coalesced_mmio"]) != 0,
            "coalesced_pio": bool(int(state["coalesced_pio"])),
        }
    except gdb.error:
        return None
