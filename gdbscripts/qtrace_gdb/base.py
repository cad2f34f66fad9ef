"""Shared pieces of the collectors: a guarded breakpoint class and symbol helpers."""

import time

import gdb

_clock = time.perf_counter


class HitBreakpoint(gdb.Breakpoint):
    """A breakpoint whose ``stop()`` records and (normally) lets QEMU run on.

    Subclasses implement ``on_hit()`` returning True only to hand control to the host.
    Errors are reported to the session, never raised into gdb (which would stop QEMU).
    Breakpoints are internal so gdb sends no MI notification per hit.
    """

    def __init__(self, session, location, enabled=False):
        super().__init__(location, internal=True)
        self.session = session
        self.enabled = enabled
        self._kind = type(self).__name__

    def stop(self):
        started = _clock()
        try:
            return bool(self.on_hit())
        except Exception as exc:
            self.session.note_error("%s: %s: %s" % (self._kind, self.location, exc))
            return False
        finally:
            session = self.session
            session.python_s += _clock() - started
            session.hits += 1
            hits_by = session.hits_by
            hits_by[self._kind] = hits_by.get(self._kind, 0) + 1

    def on_hit(self):
        raise NotImplementedError


def entry_location(symbol):
    """A location that breaks after the prologue, so parameters are readable.

    A function of a C file is named with its file (another file may have a static function
    of that name). One defined in a header (a static inline, with a copy in each C file that
    uses it) is named alone, which gives a location in every copy: ``-source`` with a header
    makes gdb read the debug info of every C file that includes it (922 for
    include/system/memory.h), and gdb scans all the debug info it has read at every stop
    (mapping PCs to functions): measured on the hit-dense probe, that doubled the cost of
    a stop. :func:`in_copies_only` checks what the name alone found.
    """
    if symbol.symtab is None:
        return symbol.name
    if symbol.symtab.filename.endswith(".c"):
        return source_location(symbol)
    return "-function %s" % symbol.name


def source_location(symbol):
    """``symbol``'s function in its own file: every copy of it when the file is a header."""
    return "-source %s -function %s" % (symbol.symtab.filename, symbol.name)


def in_copies_only(breakpoint, symbol):
    """Are all of ``breakpoint``'s locations in functions named and defined as ``symbol``
    (a location by name alone also finds a same-named static function of another file)?"""
    for location in breakpoint.locations:
        found = function_symbol(location.address)
        if found is None or found.name != symbol.name or found.symtab is None:
            return False
        if found.symtab.filename != symbol.symtab.filename:
            return False
    return True


def all_functions(name):
    """Every function of that name: a static inline from a header has one copy per C file at -O0."""
    found = list(gdb.lookup_static_symbols(name))
    symbol = gdb.lookup_global_symbol(name)
    if symbol is not None:
        found.append(symbol)
    return [s for s in found if s.type is not None and s.type.code == gdb.TYPE_CODE_FUNC]


def find_function(name, source_file=None):
    """The gdb.Symbol of a (possibly static) function, preferring one from ``source_file``."""
    candidates = []
    found = gdb.lookup_global_symbol(name)
    if found is not None:
        candidates.append(found)
    candidates.extend(gdb.lookup_static_symbols(name))
    candidates = [s for s in candidates if s.type is not None and s.type.code == gdb.TYPE_CODE_FUNC]
    if not candidates:
        raise gdb.GdbError("no function named %s in this QEMU binary" % name)
    if source_file:
        for symbol in candidates:
            if symbol.symtab is not None and symbol.symtab.filename.endswith(source_file):
                return symbol
    return candidates[0]


def function_block(symbol):
    """The outermost block of a function (its parameters live there)."""
    start = int(symbol.value().address)
    block = gdb.block_for_pc(start)
    while block is not None and block.function is None:
        block = block.superblock
    if block is None:
        raise gdb.GdbError("no debug block for %s" % symbol.name)
    return block


def parameters(block):
    """The function's parameters in declaration order."""
    return [s for s in block if s.is_argument]


def return_addresses(block):
    """Addresses of the function's ``ret`` instructions (x86-64): where its result is in rax."""
    arch = gdb.selected_inferior().architecture()
    return [
        i["addr"]
        for i in arch.disassemble(block.start, block.end - 1)
        if i["asm"].split()[0].startswith("ret")
    ]


def pc_range(name):
    """(start, end) of a function, or None when this QEMU version has no such function."""
    try:
        block = function_block(find_function(name))
    except gdb.GdbError:
        return None
    return block.start, block.end


class DeviceFilter:
    """The PCI devices a collector records, by PCIDevice pointer, known once discovery ran.

    Before discovery nothing matches (no vCPU has run by then). ``label`` is ``None`` for
    the captured device and the QOM type name for another device on its path (a bridge).
    """

    def __init__(self):
        self._known = {}

    def add(self, pci_dev, label=None):
        device = pci_dev.dereference()
        self._known[int(pci_dev)] = (
            symbol_name(device["config_read"]),
            symbol_name(device["config_write"]),
            label,
        )

    def matches(self, pci_dev):
        """Is this PCIDevice pointer one the collector records?"""
        return int(pci_dev) in self._known

    def hooks(self, pci_dev):
        """(config_read name, config_write name, label), or None for a device not recorded."""
        return self._known.get(int(pci_dev))


def function_symbol(pointer):
    """The gdb.Symbol of the function a pointer points to, or None (NULL, no symbol)."""
    address = int(pointer)
    if address == 0:
        return None
    block = gdb.block_for_pc(address)
    while block is not None and block.function is None:
        block = block.superblock
    return block.function if block is not None else None


def symbol_name(pointer):
    """The name of the function a pointer points to (its address when it has no symbol)."""
    if int(pointer) == 0:
        return None
    symbol = function_symbol(pointer)
    return symbol.name if symbol is not None else "0x%x" % int(pointer)
