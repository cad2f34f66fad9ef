"""The device's work off the register path in the timeline: a timer the vCPU's write arms runs
on the main loop, the interrupt it raises sits inside that run, and a flow joins arm and run
across the two threads' tracks (records as the collector writes them, async ones without t)."""

from __future__ import annotations

import json
from typing import Any

from format_rules import chrome_trace_problems
from qtrace.export.perfetto import chrome_trace
from qtrace.trace import Header, Stack, Trace, record_from_json
from qtrace.trace.schema import Frame

WRITE = ("e1000_mmio_write", "memory_region_dispatch_write", "kvm_cpu_exec", "kvm_vcpu_thread_fn")
ARM = ("timer_mod", "set_ics", "e1000_mmio_write", "kvm_cpu_exec", "kvm_vcpu_thread_fn")
RUN = ("e1000_mit_timer", "timerlist_run_timers", "main_loop_wait", "qemu_main_loop", "main")
IRQ = ("pci_set_irq", "set_interrupt_cause", "e1000_mit_timer", "qemu_main_loop", "main")
BH = ("qemu_bh_schedule", "e1000_mmio_write", "kvm_vcpu_thread_fn")
BH_RUN = ("e1000_flush_bh", "aio_bh_poll", "iothread_run")


def _stack(name: str, funcs: tuple[str, ...]) -> Stack:
    return Stack(name, tuple(Frame(f, "hw/net/e1000.c", 10 + i) for i, f in enumerate(funcs)))


def _trace() -> Trace:
    lines: list[dict[str, Any]] = [
        {
            "type": "exit",
            "seq": 1,
            "reason": "KVM_EXIT_MMIO",
            "vcpu": 0,
            "phys_addr": 0xFEBC00C8,
            "len": 4,
            "is_write": True,
            "stack": "w",
            "t": 1.0,
            "thread": "CPU 0/KVM",
        },
        {
            "type": "access",
            "seq": 2,
            "op": "write",
            "space": "mmio",
            "region": "e1000-mmio",
            "offset": 0xC8,
            "size": 4,
            "value": 1,
            "exit_seq": 1,
            "stack": "w",
            "vcpu": 0,
            "t": 1.0004,
            "thread": "CPU 0/KVM",
        },
        {
            "type": "async",
            "seq": 3,
            "kind": "timer",
            "op": "arm",
            "callback": "e1000_mit_timer",
            "object": "0x5610",
            "expire_ns": 5,
            "stack": "a",
            "thread": "CPU 0/KVM",
        },
        {
            "type": "async",
            "seq": 4,
            "kind": "bh",
            "op": "schedule",
            "callback": "e1000_flush_bh",
            "stack": "b",
            "thread": "CPU 0/KVM",
        },
        {
            "type": "async",
            "seq": 5,
            "kind": "timer",
            "op": "run",
            "callback": "e1000_mit_timer",
            "stack": "r",
            "thread": "main",
        },
        {"type": "irq", "seq": 6, "level": 1, "stack": "i", "t": 1.0021, "thread": "main"},
        {
            "type": "async",
            "seq": 7,
            "kind": "bh",
            "op": "run",
            "callback": "e1000_flush_bh",
            "stack": "h",
            "thread": "IO iothread0",
        },
        {
            "type": "access",
            "seq": 8,
            "op": "read",
            "space": "mmio",
            "region": "e1000-mmio",
            "offset": 0xC0,
            "size": 4,
            "value": 0,
            "stack": "w",
            "vcpu": 0,
            "t": 1.003,
            "thread": "CPU 0/KVM",
        },
    ]
    stacks = {
        s.id: s
        for s in (
            _stack("w", WRITE),
            _stack("a", ARM),
            _stack("r", RUN),
            _stack("i", IRQ),
            _stack("b", BH),
            _stack("h", BH_RUN),
        )
    }
    records = [record_from_json(line) for line in lines]
    header = Header(device="e1000", qemu_version="10.2.2", accel="kvm")
    return Trace(header, records, stacks)  # type: ignore[arg-type]


def _by_seq(obj: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {e["args"]["seq"]: e for e in obj["traceEvents"] if e["ph"] in "Xi"}


def test_async_work_is_on_its_threads_tracks_and_keeps_the_rules() -> None:
    obj: dict[str, Any] = chrome_trace(_trace())
    assert chrome_trace_problems(obj) == [], json.dumps(obj)[:2000]
    names = {e["tid"]: e["args"]["name"] for e in obj["traceEvents"] if e["name"] == "thread_name"}
    events = _by_seq(obj)
    assert names[events[3]["tid"]] == "CPU 0/KVM" and names[events[5]["tid"]] == "main loop"
    assert names[events[7]["tid"]] == "IO iothread0"
    assert events[5]["name"] == "timer run e1000_mit_timer"
    assert "async records without t" in obj["otherData"]["timestamps"]


def test_a_timer_run_spans_the_interrupt_it_raises() -> None:
    events = _by_seq(chrome_trace(_trace()))  # type: ignore[arg-type]
    run, irq = events[5], events[6]
    assert run["ts"] < irq["ts"] <= run["ts"] + run["dur"]


def test_flows_join_arm_to_run_and_schedule_to_run_across_threads() -> None:
    obj: dict[str, Any] = chrome_trace(_trace())
    flows: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for e in obj["traceEvents"]:
        if e["ph"] in "sf":
            flows.setdefault((e["name"], e["id"]), {})[e["ph"]] = e
    events = _by_seq(obj)
    assert set(flows) == {("exit -> access", 2), ("timer arm -> run", 5), ("bh schedule -> run", 7)}
    timer = flows[("timer arm -> run", 5)]
    assert (timer["s"]["tid"], timer["s"]["ts"]) == (events[3]["tid"], events[3]["ts"])
    assert (timer["f"]["tid"], timer["f"]["ts"]) == (events[5]["tid"], events[5]["ts"])
    assert timer["s"]["tid"] != timer["f"]["tid"]
