"""Track assignment: a record's thread field, else its vCPU, else its stack's entry function."""

from __future__ import annotations


from qtrace.export.threads import ThreadRole, assign_threads
from qtrace.trace import Access, Frame, Header, Irq, Stack, Trace, record_from_json

VCPU_STACK = Stack("s1", (Frame("e1000_mmio_write"), Frame("kvm_vcpu_thread_fn")))
TIMER_STACK = Stack(
    "s2", (Frame("pci_set_irq"), Frame("e1000_mit_timer"), Frame("qemu_main_loop"), Frame("main"))
)
IO_STACK = Stack("s3", (Frame("virtio_queue_notify"), Frame("iothread_run")))


def _trace(*records: object, accel: str = "kvm") -> Trace:
    stacks = {s.id: s for s in (VCPU_STACK, TIMER_STACK, IO_STACK)}
    return Trace(Header(device="e1000", qemu_version="10.2.2", accel=accel), list(records), stacks)  # type: ignore[arg-type]


def _access(seq: int, **kw: object) -> Access:
    return Access(seq=seq, op="write", space="mmio", offset=0, size=4, value=0, **kw)  # type: ignore[arg-type]


def test_vcpu_field_then_stack_entry_function() -> None:
    trace = _trace(
        _access(1, vcpu=1, stack="s1"),
        Irq(seq=2, level=1, stack="s1"),  # raised on a vCPU thread: the vCPU of the record before
        Irq(seq=3, level=0, stack="s2"),  # the interrupt-moderation timer: the main loop
        Irq(seq=4, level=0, stack="s3"),
        Irq(seq=5, level=0),
        accel="tcg",
    )
    names = [(t.role, t.name) for _, t in assign_threads(trace)]
    assert names == [
        (ThreadRole.VCPU, "CPU 1/TCG"),
        (ThreadRole.VCPU, "CPU 1/TCG"),
        (ThreadRole.MAIN_LOOP, "main loop"),
        (ThreadRole.IOTHREAD, "iothread 0"),
        (ThreadRole.UNKNOWN, "unknown thread"),
    ]


def test_tracks_have_distinct_ids_and_vcpus_sort_first() -> None:
    trace = _trace(_access(1, vcpu=0), _access(2, vcpu=1), Irq(seq=3, level=1, stack="s2"))
    threads = {t.tid: t for _, t in assign_threads(trace)}
    assert len(threads) == 3
    order = [t.name for t in sorted(threads.values(), key=lambda t: t.sort_index)]
    assert order == ["CPU 0/KVM", "CPU 1/KVM", "main loop"]


def test_the_thread_field_names_the_track_and_wins() -> None:
    def access(seq: int, thread: str, **kw: object) -> Access:
        obj = {
            "type": "access",
            "seq": seq,
            "op": "read",
            "space": "mmio",
            "offset": 0,
            "size": 4,
            "value": 0,
            "thread": thread,
            **kw,
        }
        record = record_from_json(obj)
        assert isinstance(record, Access)
        return record

    trace = _trace(
        access(1, "CPU 0/KVM", vcpu=0),
        access(2, "IO iothread1", stack="s1"),  # the field wins over the stack
        access(3, "IO iothread0"),
        access(4, "main"),
        access(5, "IO iothread1"),
    )
    threads = [t for _, t in assign_threads(trace)]
    assert [t.name for t in threads] == [
        "CPU 0/KVM",
        "IO iothread1",
        "IO iothread0",
        "main loop",
        "IO iothread1",
    ]
    assert threads[1].tid == threads[4].tid != threads[2].tid
