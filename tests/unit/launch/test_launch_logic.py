"""Launch-stage logic without Docker: argv builders, MI classification, exec frames."""

from __future__ import annotations

import os
import struct

import pytest

from pygdbmi.gdbmiparser import parse_response

from qtrace.docker_env import (
    KIND_LABEL,
    PID_LABEL,
    ContainerKind,
    ContainerSpec,
    container_kwargs,
    owner_labels,
)
from qtrace.launch.exec_pipes import split_frames
from qtrace.launch.mi import as_stop, is_result_for, replies_in, result_error
from qtrace.devices import pack_or_default
from qtrace.devices.start import device_start
from qtrace.launch.qemu_argv import QemuConfig, qemu_argv


def test_qemu_argv_has_the_safe_defaults() -> None:
    argv = qemu_argv(
        QemuConfig(
            device="e1000",
            accel="kvm",
            kernel="/out/g.elf",
            append="target=00:05.0 seq=e1000",
            start=device_start(pack_or_default("e1000"), (), "/out"),
        )
    )
    joined = " ".join(argv)
    assert "-nodefaults" in argv and "-no-reboot" in argv
    assert argv[argv.index("-display") + 1] == "none"
    assert "e1000,id=qtrace0,addr=05.0,netdev=qtrace-net0,romfile=" in argv
    assert "-cpu" not in argv, "never -cpu host/max: they abort under our nested KVM"
    # No network backend that reaches an address: the e1000's is a unix-socket stream
    # to qtrace's stub in the run directory.
    assert "-nic" not in joined and joined.count("-netdev") == 1
    assert argv[argv.index("-netdev") + 1] == (
        "stream,id=qtrace-net0,server=off,addr.type=unix,addr.path=/out/qtrace-net.sock"
    )  # fmt: skip
    assert argv[argv.index("-append") + 1] == "target=00:05.0 seq=e1000"
    assert "isa-debug-exit,iobase=0xf4,iosize=0x04" in argv


def test_qemu_argv_keeps_the_option_rom_when_asked() -> None:
    argv = qemu_argv(
        QemuConfig(
            device="e1000", accel="tcg", machine="q35", rom=True, marker_port=None, exit_port=None
        )
    )
    assert "e1000,id=qtrace0,addr=05.0,netdev=qtrace-net0" in argv and "-kernel" not in argv
    assert not any("isa-debug" in a for a in argv)
    assert argv[argv.index("-machine") + 1] == "q35"


def test_container_is_unprivileged_without_network_and_only_kvm_passed() -> None:
    kwargs = container_kwargs(
        ContainerSpec(image="img", run_id="r1", mounts={"/h": ("/out", "rw")}, kvm=True)
    )
    assert kwargs["network_mode"] == "none"
    assert kwargs["devices"] == ["/dev/kvm:/dev/kvm:rwm"]
    assert "privileged" not in kwargs and "cap_add" not in kwargs
    assert kwargs["labels"]["qtrace.run"] == "r1"
    assert kwargs["volumes"] == {"/h": {"bind": "/out", "mode": "rw"}}
    assert container_kwargs(ContainerSpec(image="img", run_id="r"))["devices"] == [], (
        "no /dev/kvm unless asked"
    )


@pytest.mark.parametrize("kind", list(ContainerKind))
def test_every_kind_of_container_carries_the_owner_labels(kind: ContainerKind) -> None:
    spec = ContainerSpec(image="img", kind=kind, command=("qemu", "-qtest"))
    kwargs = container_kwargs(spec)
    assert kwargs["labels"] == owner_labels(spec.run_id, kind)
    assert kwargs["labels"][PID_LABEL] == str(os.getpid()) and kwargs["labels"][KIND_LABEL] == kind
    assert kwargs["name"] == f"qtrace-{spec.run_id}-{kind}" and kwargs["command"] == [
        "qemu",
        "-qtest",
    ]


def test_each_container_gets_its_own_run_id_unless_given() -> None:
    """Two `qtrace devices` at once must not collide on a container name."""
    assert ContainerSpec(image="img").name != ContainerSpec(image="img").name


def _frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def test_docker_stream_frames_are_split_and_partial_ones_kept() -> None:
    data = _frame(1, b"^done\n") + _frame(2, b"warning\n") + _frame(1, b"(gdb)")
    frames, rest = split_frames(data[:-3])
    assert frames == [(1, b"^done\n"), (2, b"warning\n")]
    frames, rest = split_frames(rest + data[-3:])
    assert frames == [(1, b"(gdb)")] and rest == b""


RECORDED = {
    "result": "12^done",
    "error": '13^error,msg="No symbol \\"nope\\" in current context."',
    "bp_stop": '*stopped,reason="breakpoint-hit",disp="keep",bkptno="1",thread-id="3"',
    "exit_1": '*stopped,reason="exited",exit-code="01"',
    "exit_0": '*stopped,reason="exited-normally"',
    "signal": (
        '*stopped,reason="signal-received",signal-name="SIGSEGV",'
        'signal-meaning="Segmentation fault"'
    ),
    "reply": '~"qtrace-reply: {\\"reason\\":\\"arm\\"}\\n"',
}


def test_mi_result_records_are_matched_by_token() -> None:
    assert is_result_for(parse_response(RECORDED["result"]), 12)
    assert not is_result_for(parse_response(RECORDED["result"]), 11)
    assert result_error(parse_response(RECORDED["error"])) == 'No symbol "nope" in current context.'
    assert result_error(parse_response(RECORDED["result"])) is None


def test_mi_stops_are_classified() -> None:
    assert as_stop(parse_response(RECORDED["bp_stop"])).reason == "breakpoint-hit"  # type: ignore[union-attr]
    exited = as_stop(parse_response(RECORDED["exit_1"]))
    assert exited is not None and exited.exit_code == 1
    assert as_stop(parse_response(RECORDED["exit_0"])).exit_code == 0  # type: ignore[union-attr]
    crashed = as_stop(parse_response(RECORDED["signal"]))
    assert crashed is not None and crashed.signal == "SIGSEGV"
    assert as_stop(parse_response(RECORDED["result"])) is None


def test_collector_replies_are_read_from_the_console_stream() -> None:
    records = [parse_response(RECORDED["reply"]), parse_response(RECORDED["result"])]
    assert replies_in(records) == [{"reason": "arm"}]
