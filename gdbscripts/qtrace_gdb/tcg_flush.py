"""'qtrace' TB-flush hook: tells ``tcg_pc`` that QEMU is throwing its translated code away.

``tcg_pc`` caches, per return address into the code buffer, the guest instruction it maps
to. Code-buffer memory is reused only once QEMU flushes every translation block
(``do_tb_flush``, accel/tcg/tb-maint.c; translate-all.c in QEMU 7.2, same signature:
``static void do_tb_flush(CPUState *cpu, run_on_cpu_data tb_flush_count)``). With this
breakpoint the cache is emptied there, and no access has to check its cached block again
(a memory read per access). Flushes are rare; the breakpoint is on from QEMU's start and
never stops QEMU.
"""

import gdb

from qtrace_gdb.base import HitBreakpoint, entry_location, find_function

FLUSH_FUNCTION = "do_tb_flush"


class TbFlush(HitBreakpoint):
    def __init__(self, session, tcg_pc):
        super().__init__(session, entry_location(find_function(FLUSH_FUNCTION)), enabled=True)
        self.tcg_pc = tcg_pc

    def on_hit(self):
        self.tcg_pc.flushed()
        return False


def install(session, tcg_pc):
    """The hook, or None for a QEMU without the function (tcg_pc then checks each use)."""
    try:
        hook = TbFlush(session, tcg_pc)
    except (gdb.GdbError, gdb.error):  # find_function raises GdbError, gdb's own: error
        return None
    tcg_pc.flush_hooked = True
    return hook
