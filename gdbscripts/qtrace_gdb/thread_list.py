"""QEMU's threads by name, and where each one's stack is now.

``thread_label`` is the one naming rule of every record's ``thread`` (the breakpoint
collector's hits and the fast collector's): the name QEMU gave the thread (``-name
debug-threads=on``: ``CPU 0/KVM``, ``IO iothread0``, ``worker``, ...), and ``main`` for its
first thread, which runs the main loop and keeps the program's name.

``thread_stacks`` serves the fast collector, whose frames carry registers but no thread:
each live thread's stack pointer at the stop, which the host places in its stack mapping
(a frame's ``rsp`` in the same mapping ran on that thread).
"""

import gdb


def thread_label(thread):
    pid, lwp, _ = thread.ptid
    return "main" if lwp == pid else (thread.name or "thread %d" % lwp)


def thread_stacks():
    """[{"name", "sp"}] for every thread of the inferior (selects each in turn)."""
    selected = gdb.selected_thread()
    out = []
    try:
        for thread in gdb.selected_inferior().threads():
            thread.switch()
            try:
                sp = int(gdb.parse_and_eval("$rsp"))
            except gdb.error:
                continue
            out.append({"name": thread_label(thread), "sp": sp})
    finally:
        if selected is not None and selected.is_valid():
            selected.switch()
    return out
