"""'qtrace' arming marker: a breakpoint that tells the host "the guest has started".

Firmware makes thousands of port I/O exits before the guest runs. The probe guest's first
act is a write to an isa-debugcon port no firmware uses; this breakpoint on that device's
handler stops once, and the host then arms the real collectors.
"""

from qtrace_gdb.base import HitBreakpoint, entry_location, find_function


class Marker(HitBreakpoint):
    def __init__(self, session, function_name):
        super().__init__(session, entry_location(find_function(function_name)), enabled=True)

    def on_hit(self):
        return self.session.request_stop("arm")
