"""The guest end under TCG: which guest instruction made an access, from the host stack.

Under TCG a device access is a call from translated code (a TranslationBlock's host code in
``code_gen_buffer``) into a softmmu or port-I/O helper. The hit's stack holds that return
address; QEMU itself maps such an address back to the guest instruction when an access
faults (``cpu_restore_state`` -> ``cpu_unwind_data_from_tb``), and this module does the
same by reading memory only (no inferior call, which a breakpoint's ``stop`` may not make):

1. The TB: ``tcg_tb_alloc`` places each ``TranslationBlock`` right before its code, aligned to
   ``qemu_icache_linesize``, so scanning back from the return address finds the aligned slot
   whose ``tc.ptr`` points just past itself and whose code holds the address.
2. The instruction: after the TB's code (``tc.ptr + tc.size``) QEMU keeps, per guest
   instruction, its start words and the end of its host code as signed LEB128 deltas;
   the first instruction whose host code ends past ``return address - GETPC_ADJ`` is the one.
   Its first word is the guest PC (``tb->pc`` + deltas), or with ``CF_PCREL`` (x86 from
   QEMU 8.0) the PC's offset in its page, the page being the one of ``env->eip`` (+ the CS
   base), which QEMU keeps up to date in PC-relative TBs; of the three pages around it the
   nearest to ``env->eip`` is taken (exact unless the TB spans two pages and more than 2 KiB
   lie between that instruction and ``env->eip``).

A memory access that reaches a device goes through the softmmu slow path, code QEMU puts
after the TB's instructions, which the search data does not cover; QEMU hands the helper
the fast path's address as ``retaddr`` instead, and so does this module (read from the
helper's frame, the first time that slow path is seen).

The result is a linear address, the one the guest's symbols use. Results are cached per
return address. Code-buffer memory is reused only after a TB flush (``do_tb_flush`` resets
the regions): with the session's breakpoint there (:meth:`TcgPc.flushed`) the cache is
emptied at each flush; without it, each use of a cached result checks the TB is still there
(one memory read per access). The number of start words per instruction differs between
versions (2 in QEMU 7.2, 3 from 9.x); it is found by decoding.
"""

import gdb

GETPC_ADJ = 2  # accel/tcg/tb-internal.h (internal-common.h in 7.2)
CF_PCREL = 0x00020000  # include/exec/translation-block.h
PAGE_SIZE = 4096  # TARGET_PAGE_SIZE of x86
SCAN_BYTES = 1 << 16  # a TB's host code is at most some tens of KiB (512 instructions)
START_WORDS = (3, 2)  # INSN_START_WORDS: QEMU >= 9.x, then 7.2/8.x (TARGET_INSN_START_WORDS)


def _sleb128(data, at):
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    if shift < 64 and byte & 0x40:
        value -= 1 << shift
    return value, at


def _u(data, offset, size):
    return int.from_bytes(data[offset : offset + size], "little")


class TcgPc:
    """Maps a hit's stack to the guest PC of the instruction that made the access."""

    def __init__(self, read=None):
        # read(address, length) -> bytes, raising gdb.MemoryError (default: gdb's own)
        self.read = read or (lambda a, n: bytes(gdb.selected_inferior().read_memory(a, n)))
        self.ok = None  # None: not looked up yet (TCG is set up after QEMU's main starts)
        self.cache = {}  # return address -> (tb address, tb pc, guest value, pcrel)
        self.hosts = {}  # a stack's PCs -> its return address into the code buffer, or 0
        self.eip_at = {}  # gdb thread -> address of its CPU's env.eip (and cs base)
        self.words = None
        self.flush_hooked = False  # True: flushed() empties the cache at every TB flush

    def flushed(self):
        """QEMU is flushing its translated code: the cached TBs will be gone."""
        self.cache.clear()

    def _setup(self):
        try:
            # every vCPU thread's region of the code buffer (tcg/region.c, 7.2 to 10.x)
            region = gdb.parse_and_eval("'tcg/region.c'::region")
            start = int(region["start_aligned"])
            # split W^X (on in debug builds): code runs from a second, executable mapping
            try:
                self.rx_diff = int(gdb.parse_and_eval("tcg_splitwx_diff"))
            except gdb.error:
                self.rx_diff = 0
            if self.rx_diff >= 1 << 63:
                self.rx_diff -= 1 << 64
            self.rw_buffer = (start, start + int(region["total_size"]))
            self.buffer = (start + self.rx_diff, start + self.rx_diff + int(region["total_size"]))
            self.align = int(gdb.parse_and_eval("qemu_icache_linesize")) or 64
            tb = gdb.lookup_type("TranslationBlock")
            self.tb_size = tb.sizeof
            self.field = {}
            for name in ("pc", "cs_base", "cflags", "icount"):
                self.field[name] = _field(tb, name)
            tc = _field(tb, "tc")
            tc_type = [f for f in tb.fields() if f.name == "tc"][0].type.strip_typedefs()
            self.field["tc.ptr"] = (tc[0] + _field(tc_type, "ptr")[0], 8)
            self.field["tc.size"] = (tc[0] + _field(tc_type, "size")[0], 8)
            self.ok = start != 0
        except (gdb.error, LookupError, IndexError) as exc:
            gdb.write("qtrace tcg_pc: guest PCs not recovered: %s\n" % exc, gdb.STDERR)
            self.ok = False

    def guest_pc(self, pcs, frame=None, thread=None):
        """The guest PC (linear) of the access whose stack PCs are ``pcs`` (``frame``: the
        hit's newest gdb frame if the caller has it, walked only the first time a return
        address is seen; ``thread``: the gdb thread number, if the caller has it), or
        None."""
        if self.ok is None:
            self._setup()
        if not self.ok:
            return None
        try:
            return self._guest_pc(pcs, frame, thread)
        except (gdb.error, gdb.MemoryError, IndexError):
            return None

    def _guest_pc(self, pcs, frame, thread):
        host = self.hosts.get(pcs)
        if host is None:
            low, high = self.buffer
            host = self.hosts[pcs] = next((pc for pc in pcs if low <= pc < high), 0)
        if not host:
            return None
        found = self.cache.get(host)
        if found is not None and not self.flush_hooked and not self._still(found):
            found = None
        if found is None:
            found = self._decode(host)
            if found is None:
                # a softmmu slow path (after the TB's instructions): the helper was given the
                # fast path's address as its ``retaddr``, which maps to the instruction
                retaddr = _helper_retaddr(frame or gdb.newest_frame(), *self.buffer)
                if retaddr is not None:
                    found = self._decode(retaddr)
            if found is None:
                return None
            self.cache[host] = found
        _, _, value, pcrel = found
        if not pcrel:
            return value
        eip = self._eip(thread)
        if eip is None:
            return None
        # of the three pages around eip's, the candidate nearest to eip (the first on a tie)
        best = (eip & ~(PAGE_SIZE - 1)) - PAGE_SIZE + value
        for candidate in (best + PAGE_SIZE, best + 2 * PAGE_SIZE):
            if abs(candidate - eip) < abs(best - eip):
                best = candidate
        return best

    def _still(self, found):
        tb, pc, _, _ = found
        offset, size = self.field["pc"]
        return _u(self.read(tb + offset, size), 0, size) == pc

    def _decode(self, host):
        """Find the TB (in the writable mapping, where tcg_tb_alloc put it) whose code (at
        ``tc.ptr``, in the executable mapping) holds ``host``."""
        rw_host = host - self.rx_diff
        start = max(self.rw_buffer[0], rw_host - SCAN_BYTES)
        start -= start % self.align
        data = self.read(start, rw_host - start + 8)
        ptr_off, _ = self.field["tc.ptr"]
        size_off, _ = self.field["tc.size"]
        after = -(-self.tb_size // self.align) * self.align
        slot = rw_host - (rw_host % self.align)
        while slot >= start:
            at = slot - start
            code = slot + after + self.rx_diff
            if at + ptr_off + 8 <= len(data) and _u(data, at + ptr_off, 8) == code:
                if at + size_off + 8 <= len(data):
                    code_size = _u(data, at + size_off, 8)
                    if code <= host < code + code_size:
                        return self._from_tb(slot, code, code_size, host)
            slot -= self.align
        return None

    def _from_tb(self, tb, code, code_size, host):
        head = self.read(tb, self.tb_size)
        pc = _u(head, *self.field["pc"])
        cflags = _u(head, *self.field["cflags"])
        icount = _u(head, *self.field["icount"])
        pcrel = bool(cflags & CF_PCREL)
        # the search data: at most ~(words + 1) * 10 bytes per instruction
        data = self.read(code + code_size, icount * 40 + 16)
        target = host - GETPC_ADJ
        for words in (self.words,) if self.words else START_WORDS:
            value = _walk(data, icount, words, 0 if pcrel else pc, code, target, code + code_size)
            if value is not None:
                self.words = words
                return tb, pc, value, pcrel
        return None

    def _eip(self, thread=None):
        if thread is None:
            thread = gdb.selected_thread().num
        where = self.eip_at.get(thread)
        if where is None:
            try:
                cpu = gdb.parse_and_eval("current_cpu")
                x86 = cpu.cast(gdb.lookup_type("X86CPU").pointer())
                env = x86["env"]
                eip, cs_base = int(env["eip"].address), int(env["segs"][1]["base"].address)
            except (gdb.error, LookupError):
                return None
            # both in CPUX86State, a few hundred bytes apart: one read (target/i386/cpu.h)
            start = min(eip, cs_base)
            where = (start, max(eip, cs_base) + 8 - start, eip - start, cs_base - start)
            self.eip_at[thread] = where
        start, length, eip_at, cs_base_at = where
        data = self.read(start, length)
        return _u(data, eip_at, 8) + _u(data, cs_base_at, 8)


def _walk(data, icount, words, first, code, target, code_end):
    """The first start word of the instruction whose host code holds ``target``; None when
    the whole TB's data does not decode as ``words`` words per instruction (host code ends
    that never go back nor past the code, guest PCs within a page of each other)."""
    value, host_end, at = first, code, 0
    found = None
    try:
        for _ in range(icount):
            for j in range(words):
                delta, at = _sleb128(data, at)
                if j == 0:
                    value += delta
            step, at = _sleb128(data, at)
            host_end += step
            if step < 0 or host_end > code_end or abs(value - first) > 2 * PAGE_SIZE:
                return None
            if found is None and host_end > target:
                found = value
    except IndexError:
        return None
    return found


def _helper_retaddr(frame, low, high, depth=40):
    """The ``retaddr`` (or ``ra``) argument of the helper the translated code called."""
    newer = None
    current = frame
    for _ in range(depth):
        if current is None:
            return None
        if low <= current.pc() < high:
            break
        newer, current = current, current.older()
    else:
        return None
    if newer is None:
        return None
    for name in ("retaddr", "ra"):
        try:
            return int(newer.read_var(name))
        except (gdb.error, ValueError):
            continue
    return None


def _field(struct, name):
    for f in struct.strip_typedefs().fields():
        if f.name == name:
            return f.bitpos // 8, f.type.strip_typedefs().sizeof
    raise LookupError("no field %s" % name)
