"""QEMU's own reasons for not starting, picked from qemu.log (lines recorded from QEMU 10.2.2
and 7.2 refusing devices), with a hint."""

from __future__ import annotations

import pytest

from qtrace.launch.qemu_refusal import find_refusal, refusal_message

NVME = "qemu-system-x86_64: -device nvme,id=qtrace0,addr=05.0,romfile=: serial property not set\n"


def test_nvme_without_a_serial_is_refused_in_qemus_words() -> None:
    refusal = find_refusal(NVME, "nvme", "pc")
    assert refusal is not None
    assert refusal.lines == ("-device nvme,id=qtrace0,addr=05.0,romfile=: serial property not set",)
    assert refusal.message == (
        "QEMU refused to start: -device nvme,id=qtrace0,addr=05.0,romfile=: serial property not set"
    )
    assert "pack.toml" in refusal.hint and "start.toml" in refusal.hint
    assert refusal.known is None


def test_the_message_is_one_text_with_its_hint() -> None:
    text = refusal_message(NVME)
    assert text is not None and text.startswith("QEMU refused to start: -device nvme")
    assert text.endswith("start.toml.")


def test_warnings_info_and_other_output_are_not_reasons() -> None:
    log = (
        "qemu-system-x86_64: warning: host doesn't support requested feature\n"
        "qemu-system-x86_64: -device vhost-user-blk-pci,chardev=c0: info: QEMU waiting for "
        "connection on: disconnected:unix:/tmp/vub,server=on\n"
        "some guest output\n"
    )
    assert find_refusal(log) is None
    assert refusal_message("") is None


def test_a_chain_of_errors_is_kept_in_order_without_repeats() -> None:
    dev = "qemu-system-x86_64: -device vhost-user-gpu-pci,id=qtrace0,addr=05.0,romfile=: "
    log = f"{dev}Failed to set msg fds.\n{dev}vhost_backend_init failed: Protocol error\n" * 2
    refusal = find_refusal(log, "vhost-user-gpu-pci", "pc")
    assert refusal is not None and len(refusal.lines) == 2
    assert refusal.lines[1].endswith("vhost_backend_init failed: Protocol error")
    # qtrace gives vhost-user devices a back-end (start.toml): no "cannot start" hint
    assert refusal.known is None


def test_a_device_start_toml_cannot_start_gets_its_reason_as_the_hint() -> None:
    log = "qemu-system-x86_64: -device vfio-user-pci,id=qtrace0: socket property not set\n"
    refusal = find_refusal(log, "vfio-user-pci", "pc")
    assert refusal is not None and refusal.known is not None
    assert refusal.hint.startswith("vfio-user-pci cannot start in a capture: it is emulated")


@pytest.mark.parametrize(
    ("line", "hint_says"),
    [
        ("qemu: could not load PC BIOS 'bios-256k.bin'", "qtrace build --force"),
        (
            "qemu-system-x86_64: ../hw/pci/pci.c:1489: pci_register_bar: Assertion "
            "`is_power_of_2(size)' failed.",
            "assertion",
        ),
        (
            "qemu-system-x86_64: -device vhost-vsock-pci,guest-cid=3: Could not open "
            "'/dev/vhost-vsock': No such file or directory",
            "of the host",
        ),
        (
            "qemu-system-x86_64: -device pxb,id=qtrace0,addr=05.0: pxb devices cannot reside "
            "on a PCIe bus",
            "--machine q35 or pc",
        ),
        (
            "qemu-system-x86_64: -device virtio-iommu-pci,bus=qtrace-rp0: virtio-iommu-pci must "
            "be plugged on the root bus",
            "--topology",
        ),
        ("qemu-system-x86_64: -device AC97: no default audio driver available", "qemu.log"),
        ("qemu-system-x86_64: -device ivshmem-plain: You must specify a 'memdev'", "start.toml"),
        ("qemu-system-x86_64: -device acpi-erst: 'memdev' property is not set", "start.toml"),
        (
            "qemu-system-x86_64: -device pci-ipmi-bt: IPMI device requires a bmc attribute to "
            "be set",
            "start.toml",
        ),
        (
            "qemu-system-x86_64: -device foo: 'foo' is not a valid device model name",
            "qtrace devices",
        ),
    ],
)
def test_the_hint_follows_what_qemu_said(line: str, hint_says: str) -> None:
    refusal = find_refusal(line + "\n")
    assert refusal is not None and hint_says in refusal.hint, refusal


def test_a_device_unstartable_only_elsewhere_gets_the_generic_hint() -> None:
    line = "qemu-system-x86_64: -device pxb-pcie: pxb-pcie devices cannot reside on a PCI bus\n"
    on_pc = find_refusal(line, "pxb-pcie", "pc")
    assert on_pc is not None and on_pc.known is not None and "q35" in on_pc.hint
    behind_port = find_refusal(line, "pxb-pcie", "q35", "root-port")
    assert behind_port is not None and "root-bus" in behind_port.hint
