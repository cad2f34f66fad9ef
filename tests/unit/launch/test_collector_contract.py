"""The host -> gdb contract: the host's typed CollectorConfig and the gdb side's checker
(loaded here from ``gdbscripts/`` with the host's Python) agree key for key."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from qtrace.launch.collector_config import COLLECTOR_PROTOCOL, CollectorConfig, ExitCaseSpec
from qtrace.trace.kinds import ASYNC_KINDS
from tests.gdb_side import gdb_module


GDB = gdb_module("contract")


def _config(**changes: object) -> CollectorConfig:
    base = CollectorConfig(
        trace_path="/out/trace.jsonl",
        header={"device": "e1000", "qemu_version": "10.2.2", "accel": "kvm"},
        device_path="/machine/peripheral/qtrace0",
        record_dma=False,
        exits=(ExitCaseSpec("accel/kvm/kvm-all.c:3248", ("KVM_EXIT_MMIO",)),),
        arm_on="debugcon_ioport_write",
        quiet_ports=((0x3F8, 8),),
        max_hits=None,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_both_sides_speak_the_same_protocol() -> None:
    assert GDB.COLLECTOR_PROTOCOL == COLLECTOR_PROTOCOL


def test_the_host_writes_exactly_the_keys_the_gdb_side_reads() -> None:
    assert set(_config().as_json()) == set(GDB.CONFIG_KEYS)


def test_a_host_config_passes_the_gdb_check_through_a_file(tmp_path: Path) -> None:
    path = tmp_path / "collector.json"
    _config(fast_stacks=False, max_hits=7).write(path)
    loaded = GDB.load_config(str(path))
    assert loaded["fast_stacks"] is False and loaded["max_hits"] == 7
    assert loaded["device_path"] == "/machine/peripheral/qtrace0"
    assert loaded["record_dma"] is False and loaded["record_irq"] is True
    assert loaded["exits"] == [
        {"location": "accel/kvm/kvm-all.c:3248", "labels": ["KVM_EXIT_MMIO"]}
    ]
    assert loaded["source_root"] == "/src/qemu" and loaded["dma_cap_bytes"] == 256


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("fast_stacks"), "missing keys ['fast_stacks']"),
        (lambda d: d.update(surprise=1), "unknown keys ['surprise']"),
        (lambda d: d.update(protocol="qtrace-collector/0"), "speaks 'qtrace-collector/0'"),
        (lambda d: d.update(dma_cap_bytes="256"), "dma_cap_bytes is '256'"),
        (lambda d: d.update(dma_cap_bytes=True), "dma_cap_bytes is True"),
        (lambda d: d.update(record_irq="yes"), "record_irq is 'yes'"),
    ],
)
def test_the_gdb_side_refuses_what_it_would_misread(change, message) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(json.dumps(_config().as_json()))
    change(data)
    with pytest.raises(GDB.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        GDB.check_config(data)


def test_both_sides_know_the_same_async_kinds() -> None:
    assert GDB.ASYNC_KINDS == ASYNC_KINDS


def test_record_async_may_name_kinds_and_only_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "collector.json"
    _config(record_async=("timer",)).write(path)
    assert GDB.load_config(str(path))["record_async"] == ["timer"]
    data = json.loads(json.dumps(_config(record_async=("timers",)).as_json()))
    with pytest.raises(GDB.ConfigError, match=r"record_async names \['timers'\]"):
        GDB.check_config(data)
