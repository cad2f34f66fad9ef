"""The fast collector's host side (issue 15): gdb fast tracepoints collect, the host decodes.

gdbserver's in-process agent records each hit into its trace buffer without stopping QEMU;
gdb saves that buffer (``tsave``) and everything here reads the saved file offline: the
frames (:mod:`.tsave`), their stacks unwound through the raw block collected at ``$rsp``
(:mod:`.unwind`) and the self-checks that keep a capture from being silently incomplete
(:mod:`.checks`). Pure functions, tested without gdb or QEMU.
"""
