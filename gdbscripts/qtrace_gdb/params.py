"""A breakpoint's parameters read from their stack slots: one ``struct`` unpack of stack
memory instead of a ``gdb.Frame`` and one ``read_var`` per parameter (regs.py says what
those cost).

Where the slots are comes from the function's disassembly (``frame_slots.py``). What gdb
itself reads there is the reference: at a breakpoint's first hit the slots' values are
compared with ``Frame.read_var`` of each parameter (gdb's DWARF locations), and on any
difference the breakpoint uses ``read_var`` from then on and a collector error says so.
"""

import struct

import gdb

from qtrace_gdb import frame_slots

_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}


def instructions(block):
    """``[(address, asm text)]`` of a function's code (its outermost block)."""
    arch = gdb.selected_inferior().architecture()
    return [(i["addr"], i["asm"]) for i in arch.disassemble(block.start, block.end - 1)]


def widths(params):
    """The parameters' sizes in bytes."""
    return [p.type.strip_typedefs().sizeof for p in params]


def _scalar(params):
    """Are all the parameters integers, pointers, booleans or enums (what the argument
    registers carry whole, and what the slots are decoded as)?"""
    codes = (gdb.TYPE_CODE_INT, gdb.TYPE_CODE_PTR, gdb.TYPE_CODE_BOOL, gdb.TYPE_CODE_ENUM)
    codes += (gdb.TYPE_CODE_CHAR,)
    return all(p.type.strip_typedefs().code in codes for p in params)


def _signed(gdb_type):
    target = gdb_type.strip_typedefs()
    if target.code in (gdb.TYPE_CODE_PTR, gdb.TYPE_CODE_BOOL):
        return False
    return int(gdb.Value(-1).cast(target)) < 0


class Slots:
    """The values of ``params`` stored at ``slots`` (``(displacement from rbp, width)``
    each, as :mod:`frame_slots` finds them).

    ``low`` is the lowest displacement: :meth:`values` takes stack memory in which
    ``rbp + low`` is at a given offset. One Slots may serve several breakpoints (a read
    handler's ``ret`` instructions): the first hit of any of them checks it for all.
    """

    def __init__(self, params, slots):
        self.params = params
        self.low = min(disp for disp, _ in slots)
        order = sorted(range(len(slots)), key=lambda i: slots[i][0])
        fmt, at = "<", self.low
        for i in order:
            disp, width = slots[i]
            if disp > at:
                fmt += "%dx" % (disp - at)
            code = _CODES[width]
            fmt += code if _signed(params[i].type) else code.upper()
            at = disp + width
        self._struct = struct.Struct(fmt)
        self._from_unpacked = tuple(order.index(i) for i in range(len(slots)))
        self.checked = False
        self.by_gdb = False  # the check failed: gdb reads the parameters

    def values(self, block, offset):
        """The parameters' values in declaration order."""
        if self.by_gdb:
            return _read_vars(self.params)
        unpacked = self._struct.unpack_from(block, offset)
        return tuple(unpacked[j] for j in self._from_unpacked)

    def check(self, values, note_error):
        """At the first hit: are ``values`` what gdb reads for the parameters? Returns
        gdb's values; on a difference, reports it through ``note_error`` and has gdb read
        them from now on."""
        self.checked = True
        expected = _read_vars(self.params)
        if expected != tuple(values):
            self.by_gdb = True
            note_error(
                "%s: parameters read from the stack slots %s differ from gdb's %s: read by "
                "gdb from now on" % (gdb.newest_frame().name(), values, expected)
            )
        return expected


def _read_vars(params):
    frame = gdb.newest_frame()
    return tuple(int(frame.read_var(p)) for p in params)


def entry_slots(block, params, location_address):
    """Slots of ``params`` for a breakpoint at ``location_address`` past the function's
    prologue, or None (not the plain -O0 prologue, or the breakpoint before its stores)."""
    if not _scalar(params):
        return None
    code = instructions(block)
    found = frame_slots.prologue([asm for _, asm in code], widths(params))
    if found is None or found.body >= len(code) or location_address < code[found.body][0]:
        return None
    return Slots(params, found.slots)


def return_slots(block, params):
    """Slots of ``params`` still intact at every ``ret`` of the function, or None."""
    if not _scalar(params):
        return None
    code = instructions(block)
    slots = frame_slots.kept_at_return([asm for _, asm in code], widths(params))
    return Slots(params, slots) if slots else None
