"""Where kvm_cpu_exec keeps ``run`` and ``cpu``, and where ``struct kvm_run``'s fields lie,
learned once from gdb's values; then an exit is read straight from memory (the two slots,
then the head of the struct).

Why: decoding an exit through ``gdb.Value`` subscripts (``run["io"]["port"]``: a type
lookup and a memory read each) cost about 86 us a hit, and finding ``run`` through
``gdb.newest_frame()`` about 37 us more, on the hit-dense probe under KVM, where every
device access is an exit. At -O0 both variables live in fixed slots of kvm_cpu_exec's
frame (``rbp`` + a displacement, the same at every case line), and the fields sit at fixed
offsets of the ABI struct. :func:`learn` takes both from gdb's values at a first hit;
:meth:`Layout.read` then reads the slots and the head of ``struct kvm_run`` through
``regs.py`` and unpacks the fields. kvm_exit.py compares this with gdb's own decode at the
first hit of each breakpoint and uses gdb's from then on if they differ.
"""

import gdb

from qtrace_gdb.regs import RBP, U64, memory, registers

# The fields an exit record needs: name -> path from ``*run``. Their offsets and sizes
# come from gdb's type of this build (Linux's uapi header as QEMU carries it).
RUN_FIELDS = {
    "exit_reason": ("exit_reason",),
    "kvm_valid_regs": ("kvm_valid_regs",),
    "rip": ("s", "regs", "regs", "rip"),
    "io.direction": ("io", "direction"),
    "io.size": ("io", "size"),
    "io.port": ("io", "port"),
    "io.count": ("io", "count"),
    "io.data_offset": ("io", "data_offset"),
    "mmio.phys_addr": ("mmio", "phys_addr"),
    "mmio.data": ("mmio", "data"),
    "mmio.len": ("mmio", "len"),
    "mmio.is_write": ("mmio", "is_write"),
}  # fmt: skip
# Every field above is unsigned in the ABI; CPUState.cpu_index is an int.


class Layout:
    """The slots of ``run`` and ``cpu`` (from ``rbp``) and each field's (offset, size)."""

    def __init__(self, run_slot, cpu_slot, fields, cpu_index):
        self.run_slot = run_slot
        self.cpu_slot = cpu_slot
        self.fields = fields
        self.span = max(offset + size for offset, size in fields.values())
        self.cpu_index = cpu_index  # (offset, size) in CPUState
        self._index_of = {}  # kvm_run address -> cpu_index (fixed for a vCPU's life)

    def read(self):
        """(fields by name as ints, but ``mmio.data``: its bytes; ``run``'s address;
        cpu_index or None) of the stopped vCPU thread; raises gdb.MemoryError."""
        rbp = registers()[RBP]
        run = U64.unpack(memory(rbp + self.run_slot, 8))[0]
        block = memory(run, self.span)
        values = {}
        for name, (offset, size) in self.fields.items():
            raw = block[offset : offset + size]
            values[name] = raw if name == "mmio.data" else int.from_bytes(raw, "little")
        index = self._index_of.get(run)
        if index is None:
            index = self._vcpu(rbp, run)
        return values, run, index

    def _vcpu(self, rbp, run):
        """cpu_index of the vCPU whose kvm_run is at ``run`` (each vCPU maps its own, once),
        read through the ``cpu`` slot at its first exit; None if unreadable."""
        offset, size = self.cpu_index
        try:
            cpu = U64.unpack(memory(rbp + self.cpu_slot, 8))[0]
            raw = memory(cpu + offset, size)
        except gdb.MemoryError:
            return None
        index = self._index_of[run] = int.from_bytes(raw, "little", signed=True)
        return index


def field(run, name):
    """The gdb.Value of field ``name`` (a :data:`RUN_FIELDS` key) of ``*run``."""
    value = run.dereference()
    for part in RUN_FIELDS[name]:
        value = value[part]
    return value


def learn(frame):
    """The Layout of kvm_cpu_exec as gdb sees it in ``frame`` (a hit's newest frame), or
    None with the reason when a variable has no stack slot or a field is missing."""
    try:
        rbp = registers()[RBP]
        run, cpu = frame.read_var("run"), frame.read_var("cpu")
        if run.address is None or cpu.address is None:
            return None, "run or cpu is not in a stack slot"
        base = int(run)
        fields = {}
        for name in RUN_FIELDS:
            value = field(run, name)
            fields[name] = (int(value.address) - base, value.type.sizeof)
        index = cpu.dereference()["cpu_index"]
        cpu_index = (int(index.address) - int(cpu), index.type.sizeof)
        layout = Layout(int(run.address) - rbp, int(cpu.address) - rbp, fields, cpu_index)
    except (gdb.error, gdb.MemoryError, ValueError) as exc:
        return None, str(exc)
    return layout, None
