"""The linux and firmware guest plans and the QEMU command lines they give.

No Docker or QEMU: the plans are data, and ``qemu_argv`` is a pure function.
"""

from __future__ import annotations

import pytest

from qtrace.guests import DEBUG_EXIT_IOBASE, DEBUG_EXIT_OK_STATUS
from qtrace.guests.firmware_plan import FIRMWARE_DEBUGCON_IOBASE, firmware_plan
from qtrace.guests.linux_output import linux_verdict
from qtrace.guests.linux_plan import LINUX_KERNEL_DIR, linux_append, linux_plan
from qtrace.guests.plan import GuestPlan
from qtrace.launch.capture import GUESTS, MOUNT_GUESTS, MOUNT_OUT, capture_argv, guest_plan
from qtrace.launch.qemu_argv import ROOT_PORT_SLOT


def _argv(plan: GuestPlan, accel: str = "tcg", device: str = "e1000") -> list[str]:
    """QEMU's arguments for ``plan``, from the function the capture itself uses."""
    return capture_argv(device, accel, "pc", plan)[1:]


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def test_guests_are_offered() -> None:
    assert set(GUESTS) >= {"probe", "linux", "firmware"}
    assert guest_plan("linux", "e1000", "pc").name == "linux"
    assert guest_plan("firmware", "e1000", "pc").name == "firmware"


def test_linux_builds_its_initramfs_from_the_read_only_sources() -> None:
    plan = linux_plan(5, MOUNT_GUESTS, MOUNT_OUT)
    (command,) = plan.build_commands
    assert command[:2] == ("python3", f"{MOUNT_GUESTS}/linux/mkinitramfs.py")
    assert "--module" not in command, "the guest chooses its driver from modules.alias"
    assert command[command.index("--kernel-dir") + 1] == LINUX_KERNEL_DIR
    out = command[command.index("--out") + 1]
    assert out.startswith(MOUNT_OUT + "/")
    assert plan.initrd == f"{out}/initramfs.cpio.gz"


def test_linux_command_line() -> None:
    argv = _argv(linux_plan(5, MOUNT_GUESTS, MOUNT_OUT))
    assert _value(argv, "-kernel") == f"{LINUX_KERNEL_DIR}/vmlinuz"
    assert _value(argv, "-initrd") == f"{MOUNT_OUT}/linux/initramfs.cpio.gz"
    assert int(_value(argv, "-m")) >= 256
    append = _value(argv, "-append").split()
    assert {
        "console=ttyS0",
        "quiet",
        "panic=-1",
        f"qtrace_exit_port={DEBUG_EXIT_IOBASE}",
        "qtrace_pci=00:05.0",
    } <= set(append)
    assert f"isa-debug-exit,iobase={DEBUG_EXIT_IOBASE:#x},iosize=0x04" in _values(argv, "-device")
    assert "-no-reboot" in argv, "a panic (panic=-1) must end QEMU, not loop"
    assert "e1000,id=qtrace0,addr=05.0,netdev=qtrace-net0,romfile=" in _values(argv, "-device"), (
        "no iPXE ROM: the kernel boots directly (the netdev: the pack's unix-socket backend)"
    )
    assert "isa-debugcon" not in " ".join(argv)


def test_linux_success_is_the_done_line_whatever_the_end() -> None:
    """The exit port (status 1), init's poweroff on a failure and a panic reset (status 0)
    all end the run; the serial line judges it, so a failure carries the guest's reason."""
    plan = linux_plan(5, MOUNT_GUESTS, MOUNT_OUT)
    assert set(plan.ok_exit_statuses) == {DEBUG_EXIT_OK_STATUS, 0}
    assert plan.arm_on is None and plan.marker_port is None
    assert plan.serial_verdict is linux_verdict


def test_linux_append_exit_port_is_decimal_and_the_slot_hex() -> None:
    assert "qtrace_exit_port=244" in linux_append(0x1F, 0xF4)
    assert "qtrace_pci=00:1f.0" in linux_append(0x1F, 0xF4)


@pytest.mark.parametrize("device", ["e1000", "e1000e", "virtio-net-pci", "nvme", "rtl8139"])
def test_linux_plans_any_device_the_same_way(device: str) -> None:
    """No driver is named on the host: the initramfs and the command line differ only by
    the device's slot."""
    assert (
        guest_plan("linux", device, "pc").build_commands
        == linux_plan(5, MOUNT_GUESTS, MOUNT_OUT).build_commands
    )


def test_linux_records_the_async_kinds_the_pack_asks_for_and_the_probe_all() -> None:
    """The e1000's pack asks for its timers (mitigation, autonegotiation); other devices'
    linux captures look for no async work (the hooks stop QEMU machine-wide)."""
    assert guest_plan("linux", "e1000", "pc").record_async == ("timer",)
    assert guest_plan("linux", "nvme", "pc").record_async is False
    assert guest_plan("probe", "e1000", "pc").record_async is True


def test_linux_behind_a_root_port_is_told_the_port_slot() -> None:
    plan = guest_plan("linux", "e1000e", "q35", topology="root-port")
    assert plan.append is not None and f"qtrace_pci=00:{ROOT_PORT_SLOT:02x}.0" in plan.append


def test_firmware_command_line() -> None:
    plan = firmware_plan(MOUNT_OUT)
    argv = _argv(plan, accel="kvm")
    assert "-kernel" not in argv and "-initrd" not in argv and "-append" not in argv
    assert "e1000,id=qtrace0,addr=05.0,netdev=qtrace-net0" in _values(argv, "-device"), (
        "the device keeps its option ROM"
    )
    assert "isa-debug-exit" not in " ".join(argv)
    assert _value(argv, "-boot") == "reboot-timeout=0"
    assert f"isa-debugcon,iobase={FIRMWARE_DEBUGCON_IOBASE:#x},chardev=qtrace-firmware" in _values(
        argv, "-device"
    )
    assert f"file,id=qtrace-firmware,path={MOUNT_OUT}/firmware.log" in _values(argv, "-chardev")
    assert "/usr/lib/ipxe/qemu" in _values(argv, "-L")


def test_firmware_ends_ok_on_reset_and_keeps_debug_port_quiet() -> None:
    plan = firmware_plan(MOUNT_OUT)
    assert plan.ok_exit_statuses == (0,)
    assert plan.arm_on is None and plan.build_commands == ()
    assert (FIRMWARE_DEBUGCON_IOBASE, 1) in plan.quiet_ports
    assert (0x3F8, 8) in plan.quiet_ports
