"""Discovery from source text: kvm_cpu_exec's exit cases and a device's handlers.

The sources here are synthetic C written for these tests (QEMU's own source is checked
in tests/integration/test_build_image.py against the real 10.2.2 tree).
"""

from __future__ import annotations

import pytest

from qtrace.discover.device import DeviceInfo, check_device_name, parse_device_help
from qtrace.discover.exit_cases import find_function_body, locate_exit_cases
from qtrace.errors import UnknownDevice

SYNTHETIC_KVM = """\
static int helper(void) { return 0; }

int kvm_cpu_exec(CPUState *cpu)
{
    struct kvm_run *run = cpu->kvm_run;
    int ret;
    /* a brace in a comment { */
    const char *s = "}";
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        /* port I/O */
        handle_io(run);
        break;
    case KVM_EXIT_SHUTDOWN:
    case KVM_EXIT_SYSTEM_EVENT:

        ret = shutdown_or_event(run);
        break;
    case KVM_EXIT_MMIO:
        switch (run->mmio.len) {
        case 4:
            break;
        }
        handle_mmio(run);
        break;
    default:
        ret = -1;
    }
    return ret;
}

int after(void) { switch (run->exit_reason) { case KVM_EXIT_HLT: return 1; } }
"""


def test_exit_cases_are_found_with_their_body_lines() -> None:
    cases = locate_exit_cases(SYNTHETIC_KVM)
    lines = SYNTHETIC_KVM.splitlines()
    assert [c.labels for c in cases] == [
        ("KVM_EXIT_IO",),
        ("KVM_EXIT_SHUTDOWN", "KVM_EXIT_SYSTEM_EVENT"),
        ("KVM_EXIT_MMIO",),
    ]
    bodies = [lines[c.body_line - 1].strip() for c in cases]
    assert bodies == [
        "handle_io(run);",
        "ret = shutdown_or_event(run);",
        "switch (run->mmio.len) {",
    ]
    assert lines[cases[0].label_line - 1].strip() == "case KVM_EXIT_IO:"


def test_function_body_ignores_braces_in_comments_and_strings() -> None:
    lines = SYNTHETIC_KVM.splitlines()
    first, last = find_function_body(lines, "kvm_cpu_exec")
    assert lines[first].startswith("int kvm_cpu_exec")
    assert lines[last] == "}"


def test_missing_function_or_switch_is_reported() -> None:
    with pytest.raises(ValueError, match="no definition"):
        locate_exit_cases("int other(void) { return 0; }\n")
    with pytest.raises(ValueError, match="switch"):
        locate_exit_cases("int kvm_cpu_exec(CPUState *cpu)\n{\n    return 0;\n}\n")


def test_device_help_parsing_and_unknown_names() -> None:
    text = (
        "Network devices:\n"
        'name "e1000", bus PCI, alias "e1000-82540em", desc "Intel Gigabit Ethernet"\n'
        'name "e1000e", bus PCI, desc "Intel 82574L GbE Controller"\nname "isa-debugcon", bus ISA\n'
    )
    devices = parse_device_help(text)
    assert DeviceInfo("e1000", "PCI", "Intel Gigabit Ethernet") in devices
    check_device_name("e1000e", devices)
    with pytest.raises(UnknownDevice) as info:
        check_device_name("e1001", devices)
    assert info.value.closest[:2] == ["e1000", "e1000e"]
    with pytest.raises(UnknownDevice):
        check_device_name("isa-debugcon", devices)
