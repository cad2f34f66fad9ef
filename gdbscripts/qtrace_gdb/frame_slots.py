"""Where a -O0 function keeps its parameters, read from its disassembly (no ``gdb`` import).

QEMU's debug build (-O0) stores every register parameter in a stack slot in its prologue
(``mov %rdi,-0x18(%rbp)``) and reads it from there ever after. A breakpoint can use that
instead of ``Frame.read_var`` (about 10 us a parameter, after ~35 us for the ``gdb.Frame``
itself, at every stop):

- the slots: parameter ``i`` came in the i-th argument register (x86-64 System V; only
  integer and pointer parameters are handled) and lives at ``rbp + displacement``, so one
  memory read returns them all;
- whether the function keeps its parameters: when no instruction after the prologue
  writes a slot or takes its address, the slot still holds what the caller passed when the
  function returns, so a read handler can be recorded at its ``ret`` alone (one stop per
  read instead of two). After ``leave`` the frame is dead but intact: nothing runs on the
  thread until ``ret``, and a signal frame skips the 128-byte red zone below ``rsp``, so
  :func:`kept_at_return` also asks the slots to lie in it.

The analysis is conservative: a write of unknown width near a slot, an address it cannot
place, or an instruction it does not know counts as a write, and the caller keeps the entry
breakpoint. The gdb side checks the slots against gdb's DWARF at the first hit of each
breakpoint (``mmio.py``).
"""

import re

# The six integer argument registers, by width (System V AMD64 ABI).
ARGUMENT_REGISTERS = (
    {"rdi": 8, "edi": 4, "di": 2, "dil": 1},
    {"rsi": 8, "esi": 4, "si": 2, "sil": 1},
    {"rdx": 8, "edx": 4, "dx": 2, "dl": 1},
    {"rcx": 8, "ecx": 4, "cx": 2, "cl": 1},
    {"r8": 8, "r8d": 4, "r8w": 2, "r8b": 1},
    {"r9": 8, "r9d": 4, "r9w": 2, "r9b": 1},
)
RED_ZONE_BYTES = 128
UNKNOWN_WIDTH = 64  # a write whose width the text does not give: assume it is wide
_PREFIXES = {"rep", "repz", "repe", "repnz", "repne", "lock", "notrack", "bnd", "data16"}
_CALLEE_SAVED = {"%rbx", "%r12", "%r13", "%r14", "%r15"}
_MEMORY = re.compile(
    r"^(?:%\w+:)?(?P<disp>-?(?:0x[0-9a-f]+|\d+))?\((?P<base>%\w+)?(?:,(?P<index>%\w+)(?:,\d+)?)?\)$"
)
_SUFFIX_WIDTH = {"b": 1, "w": 2, "l": 4, "q": 8}
# Instructions that write none of their operands (jumps: "j..."; compares, tests, pushes).
_READ_ONLY_PREFIXES = ("test", "push", "call", "j", "nop", "ucomis", "comis", "prefetch", "ptest")


def _register_width(name):
    name = name.lstrip("%")
    for family in ARGUMENT_REGISTERS:
        if name in family:
            return family[name]
    if name.startswith(("xmm", "ymm", "zmm")):
        return {"x": 16, "y": 32, "z": 64}[name[0]]
    if re.fullmatch(r"r(ax|bx|cx|dx|si|di|bp|sp)|r\d+", name):
        return 8
    if re.fullmatch(r"e(ax|bx|cx|dx|si|di|bp|sp)|r\d+d", name):
        return 4
    if re.fullmatch(r"(ax|bx|cx|dx|si|di|bp|sp)|r\d+w", name):
        return 2
    if re.fullmatch(r"[abcd][lh]|(si|di|bp|sp)l|r\d+b", name):
        return 1
    return None


def split(asm):
    """(mnemonic, [operands]) of one line of gdb's AT&T disassembly (comments dropped)."""
    text = asm.split("#", 1)[0]
    text = re.sub(r"<[^>]*>", "", text).strip()
    words = text.split(None, 1)
    while words and words[0] in _PREFIXES:
        words = words[1].split(None, 1) if len(words) > 1 else []
    if not words:
        return "", []
    operands, depth, current = [], 0, ""
    for char in words[1] if len(words) > 1 else "":
        if char == "," and depth == 0:
            operands.append(current.strip())
            current = ""
            continue
        depth += char == "("
        depth -= char == ")"
        current += char
    if current.strip():
        operands.append(current.strip())
    return words[0], operands


def _memory(operand):
    """(base register, displacement, has index) of a memory operand, else None."""
    match = _MEMORY.match(operand.lstrip("*"))
    if match is None:
        return None
    disp = int(match.group("disp") or "0", 0)
    return match.group("base"), disp, match.group("index") is not None


class Prologue:
    """What a function's prologue did: the parameters' slots and the frame it set up.

    Attributes:
        slots: ``(displacement from rbp, width)`` per parameter asked for.
        body: index of the first instruction after the prologue.
        rsp_offset: ``rsp - rbp`` once the prologue ran, or None when it did not move
            ``rsp`` below ``rbp`` (a leaf function keeping its locals in the red zone).
    """

    def __init__(self, slots, body, rsp_offset):
        self.slots = slots
        self.body = body
        self.rsp_offset = rsp_offset


def prologue(asms, widths):
    """The slots of the first ``len(widths)`` parameters (their sizes in bytes), from the
    disassembly ``asms`` (instruction texts from the function's first), or None when the
    prologue is not the plain -O0 one or a parameter was not stored whole."""
    at = 0
    if at < len(asms) and split(asms[at])[0] == "endbr64":
        at += 1
    if [split(a) for a in asms[at : at + 2]] != [("push", ["%rbp"]), ("mov", ["%rsp", "%rbp"])]:
        return None
    at += 2
    rsp_offset = 0
    while at < len(asms):
        mnemonic, operands = split(asms[at])
        if mnemonic == "push" and operands and operands[0] in _CALLEE_SAVED:
            rsp_offset -= 8
        elif mnemonic in ("sub", "add") and len(operands) == 2 and operands[1] == "%rsp":
            if not operands[0].startswith("$"):
                return None
            amount = int(operands[0][1:], 0)
            if amount >= 1 << 63:  # gcc writes a 128-byte frame as add $-0x80 (0xff...80)
                amount -= 1 << 64
            rsp_offset += amount if mnemonic == "add" else -amount
        else:
            break
        at += 1
    stored = {}
    while at < len(asms):
        mnemonic, operands = split(asms[at])
        target = _memory(operands[1]) if mnemonic == "mov" and len(operands) == 2 else None
        if target is None or target[0] != "%rbp" or target[2]:
            break
        if not any(operands[0][1:] in family for family in ARGUMENT_REGISTERS):
            break  # the body's first store, not an argument's
        stored[operands[0][1:]] = (target[1], _register_width(operands[0]))
        at += 1
    slots = []
    for index, width in enumerate(widths):
        if index >= len(ARGUMENT_REGISTERS):
            return None
        found = [stored[r] for r in ARGUMENT_REGISTERS[index] if r in stored]
        if len(found) != 1 or found[0][1] != width:
            return None
        slots.append(found[0])
    return Prologue(slots, at, rsp_offset if rsp_offset < 0 else None)


def _written_width(mnemonic, operands):
    if mnemonic.startswith(("f", "fn")):  # x87: the suffix is not the width
        return UNKNOWN_WIDTH
    if len(operands) >= 2 and operands[0].startswith("%"):
        width = _register_width(operands[0])
        if width:
            return width
    return _SUFFIX_WIDTH.get(mnemonic[-1:], UNKNOWN_WIDTH)


def _reads_only(mnemonic):
    if mnemonic.startswith("cmp") and not mnemonic.startswith("cmpxchg"):
        return True
    if mnemonic in ("bt", "btw", "btl", "btq", "leave", "ret", "retq", "hlt", "ud2"):
        return True
    return mnemonic.startswith(_READ_ONLY_PREFIXES)


def _overlaps(start, width, slots):
    return any(start < s + w and s < start + width for s, w in slots)


def keeps_parameters(asms, found):
    """Do the instructions after the prologue leave every slot of ``found`` (a
    :class:`Prologue`) as the prologue stored it: no write to it, no address taken?"""
    slots = found.slots
    frame_low = found.rsp_offset
    if frame_low is not None and any(disp < frame_low for disp, _ in slots):
        frame_low = None  # a slot below rsp: treat the frame as a leaf's
    for asm in asms[found.body :]:
        mnemonic, operands = split(asm)
        if not mnemonic:
            return False
        if (
            operands[-1:] == ["%rsp"]
            and mnemonic not in ("pop", "push")
            and not _reads_only(mnemonic)
        ):
            frame_low = None  # rsp moved (alloca): rsp-relative places are unknown from here
        if frame_low is None and mnemonic.startswith(("push", "call")):
            return False  # the slots sit below rsp, where a push or a call writes
        places = [(i, _memory(o)) for i, o in enumerate(operands)]
        if mnemonic.startswith("lea"):
            for _, place in places:
                if place and place[0] == "%rbp" and (place[2] or _overlaps(place[1], 1, slots)):
                    return False
            continue
        if _reads_only(mnemonic):
            continue
        if mnemonic.startswith(("xchg", "xadd", "cmpxchg")):
            written = places
        else:
            written = places[-1:]
        width = _written_width(mnemonic, operands)
        for _, place in written:
            if place is None:
                continue
            base, disp, indexed = place
            if base == "%rbp":
                if indexed or _overlaps(disp, width, slots):
                    return False
            elif base == "%rsp":
                if frame_low is None or indexed or _overlaps(frame_low + disp, width, slots):
                    return False
    return True


def kept_at_return(asms, widths):
    """The parameters' slots when the function keeps them and they are still intact at its
    ``ret`` (within the red zone of the dead frame), else None."""
    found = prologue(asms, widths)
    if found is None:
        return None
    # The saved rbp and the return address are read there too (the caller's frame, the key).
    guarded = Prologue(found.slots + [(0, 16)], found.body, found.rsp_offset)
    if not keeps_parameters(asms, guarded):
        return None
    # At the ret, rsp = rbp + 8 (the popped frame's rbp): a slot at rbp + d is rsp + d - 8.
    if any(disp - 8 < -RED_ZONE_BYTES for disp, _ in found.slots):
        return None
    return found.slots
