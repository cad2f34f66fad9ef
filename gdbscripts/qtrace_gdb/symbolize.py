"""Symbols and source lines for stacks gdb did not unwind (the fast collector's).

A fast run's stacks are lists of return addresses unwound on the host from raw stack
blocks; gdb names each one here, once per distinct stack, in the same frame shape the
breakpoint collector writes (``func``, ``pc``, ``file`` relative to the source root,
``line``). The innermost address is where the tracepoint sat; every other one is a return
address, so its line is the one of the call before it (``pc - 1``), as gdb's ``bt`` shows.
"""

import gdb


def frame_at(pc, innermost, root):
    """The frame record of ``pc`` (``innermost``: not a return address)."""
    where = pc if innermost else pc - 1
    entry = {"func": "??", "pc": "0x%x" % pc}
    try:
        block = gdb.block_for_pc(where)
    except RuntimeError:
        block = None
    while block is not None and block.function is None:
        block = block.superblock
    if block is not None:
        entry["func"] = block.function.name
    else:
        symbol = gdb.execute("info symbol 0x%x" % where, to_string=True)
        if " in section " in symbol:
            entry["func"] = symbol.split(" in section ")[0].split(" + ")[0].strip()
    sal = gdb.find_pc_line(where)
    if sal.symtab is not None:
        path = sal.symtab.fullname()
        entry["file"] = path[len(root):] if path.startswith(root) else path
        if sal.line:
            entry["line"] = sal.line
    else:
        lib = gdb.solib_name(pc)
        if lib:
            entry["file"] = lib
    return entry


def symbolize(stacks, source_root):
    """Frame records for each stack (a list of addresses, innermost first)."""
    root = source_root.rstrip("/") + "/"
    return [[frame_at(pc, i == 0, root) for i, pc in enumerate(pcs)] for pcs in stacks]
