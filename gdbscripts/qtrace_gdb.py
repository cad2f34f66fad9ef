"""gdb entry point of the qtrace collector: ``source gdbscripts/qtrace_gdb.py``.

Runs inside gdb (gdb's own Python, standard library only), inside the capture container.
It puts this folder on ``sys.path`` (gdb does not), sets the signal policy QEMU needs, and
registers the ``qtrace`` prefix command whose subcommands the host drives over MI:

    qtrace setup CONFIG.json   create the breakpoints described by the host
    qtrace discover            at vm_start: find the device's regions and break on them
    qtrace on-stop             after a stop the collector asked for: do what it wanted
    qtrace finish STATUS       write the trace's end record
    qtrace status              print counters as one JSON line
"""

import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

import gdb  # noqa: E402

from qtrace_gdb import commands  # noqa: E402

# QEMU uses these signals internally (vCPU kicks, pipes); they must reach it silently.
for _signal in ("SIGUSR1", "SIGUSR2", "SIGPIPE"):
    gdb.execute(f"handle {_signal} nostop noprint pass", to_string=True)
gdb.execute("set pagination off", to_string=True)
gdb.execute("set confirm off", to_string=True)
# ASLR cannot be disabled in an unprivileged container; say so once instead of warning.
gdb.execute("set disable-randomization off", to_string=True)
gdb.execute("set print thread-events off", to_string=True)

commands.register()
