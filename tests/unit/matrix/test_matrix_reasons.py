"""Named reasons: QEMU's own message first, then what the capture said, each cut short."""

from __future__ import annotations

import pytest

from qtrace.matrix.reasons import MAX_PHRASE, Category, qemu_message, short_reason

WARNING = (
    "qemu-system-x86_64: warning: host doesn't support requested feature: "
    "CPUID[eax=01h].ECX.pni [bit 0]\n"
)
NO_START = "cannot read the guests serial output: serial log: no # qtrace-probe/1 start line"


def _log(device: str, message: str) -> str:
    return (
        f"{WARNING}qemu-system-x86_64: -device {device},id=qtrace0,addr=05.0,romfile=: {message}\n"
    )


def test_qemu_message_skips_warnings_and_the_device_option() -> None:
    assert qemu_message(_log("nvme", "serial property not set")) == "serial property not set"
    assert qemu_message(WARNING) is None
    assert qemu_message("QEMU exited with status 1: a | qemu-system-x86_64: boom") == "boom"


@pytest.mark.parametrize(
    ("device", "message", "category", "phrase"),
    [
        (
            "nvme",
            "serial property not set",
            Category.QEMU_REFUSES,
            "QEMU refuses it: serial property not set",
        ),
        (
            "vfio-pci",
            "No provided host device",
            Category.HOST_HARDWARE,
            "needs host hardware (a host PCI device): No provided host device",
        ),
        (
            "vhost-user-blk-pci",
            "chardev is mandatory",
            Category.BACKEND,
            "needs an external backend (a backend process): chardev is mandatory",
        ),
        (
            "xen-platform",
            "xen-platform device requires a Xen guest",
            Category.HOST_HARDWARE,
            "needs host hardware (the Xen hypervisor): xen-platform device requires a Xen guest",
        ),
    ],
)
def test_a_device_qemu_refuses_is_named_by_qemus_message_not_the_symptom(
    device: str, message: str, category: Category, phrase: str
) -> None:
    named = short_reason("error", NO_START, qemu_log=_log(device, message))
    assert (named.category, named.phrase) == (category, phrase)


@pytest.mark.parametrize(
    ("why", "category"),
    [
        ("passes a host PCI device through (VFIO)", Category.HOST_HARDWARE),
        ("works only in a Xen guest", Category.HOST_HARDWARE),
        ("is emulated by another process, a vfio-user server", Category.BACKEND),
        ("only sits on a PCIe root bus (use --machine q35)", Category.WRONG_PLACE),
        ("is odd", Category.UNSTARTABLE),
    ],
)
def test_the_devices_registry_names_a_device_no_capture_can_start(
    why: str, category: Category
) -> None:
    named = short_reason("error", NO_START, qemu_log=_log("x", "no such thing"), unstartable=why)
    assert (named.phrase, named.category) == (why, category)


def test_a_reason_that_quotes_qemu_is_read_the_same_way() -> None:
    reason = "QEMU refused to start: -device nvme,id=qtrace0: serial property not set"
    assert short_reason("error", reason).phrase == "QEMU refuses it: serial property not set"


def test_an_assertion_is_a_crash_with_function_and_place() -> None:
    log = (
        "qemu-system-x86_64: ../hw/usb/hcd-xhci.c:1234: xhci_run: "
        "Assertion `slot->enabled' failed.\n"
    )
    named = short_reason("error", "QEMU stopped: signal-received SIGABRT", qemu_log=log, accesses=9)
    assert named.category is Category.CRASH
    assert named.phrase == "assertion failed in xhci_run (../hw/usb/hcd-xhci.c:1234): slot->enabled"


def test_a_signal_without_a_message_is_a_crash_named_by_the_signal() -> None:
    named = short_reason("error", "QEMU stopped: signal-received SIGSEGV", accesses=3)
    assert (named.category, named.phrase) == (Category.CRASH, "QEMU crashed (SIGSEGV)")


def test_kvm_internal_error_keeps_its_suberror() -> None:
    reason = (
        "KVM internal error (Suberror: 1, emulation failure); guest RIP=0xfffe; "
        "instruction bytes 0f 01. QEMU paused the guest."
    )
    named = short_reason("error", reason)
    assert named.category is Category.KVM_ERROR
    assert named.phrase == "KVM internal error (Suberror: 1, emulation failure)"


def test_timeout_and_hang_say_how_far_the_run_got() -> None:
    timeout = short_reason("timeout", "--timeout 120 s reached", accesses=5000)
    assert timeout.phrase == "--timeout 120 s reached (5000 accesses)"
    hang = short_reason(
        "guest-hang",
        "no progress for 45 s: the guest never started. Under nested KVM ... use --accel tcg.",
    )
    assert hang.category is Category.GUEST_HANG
    assert hang.phrase == "guest hang: the guest never started (45 s without progress)"


def test_errors_before_the_capture_are_named_by_their_kind() -> None:
    discovery = short_reason(
        "error",
        "could not find where QOM type 'x' is defined in the QEMU source",
        exit_code=1,
    )
    assert discovery.category is Category.DISCOVERY
    assert short_reason("error", "No such option: --topology", exit_code=2).category is (
        Category.USAGE
    )
    assert short_reason("error", "Cannot reach the Docker daemon.", exit_code=3).category is (
        Category.ENVIRONMENT
    )


def test_the_probes_own_verdict() -> None:
    named = short_reason("error", "the guest reported: DONE fail bar0 unassigned")
    assert (named.category, named.phrase) == (Category.GUEST, "probe failed: bar0 unassigned")


def test_long_reasons_are_cut_with_an_ellipsis() -> None:
    named = short_reason("error", "x" * 500)
    assert len(named.phrase) == MAX_PHRASE and named.phrase.endswith("…")


def test_qemus_log_is_preferred_to_a_reason_that_quotes_it_with_a_hint() -> None:
    reason = (
        "QEMU refused to start: -device nvme,id=qtrace0,addr=05.0: serial property not set. "
        "QEMU needs a property or a backend qtrace did not give the device: set it in ..."
    )
    named = short_reason("error", reason, qemu_log=_log("nvme", "serial property not set"))
    assert named.phrase == "QEMU refuses it: serial property not set"


def test_a_qtrace_that_cannot_import_is_not_the_devices_fault() -> None:
    named = short_reason(
        "error",
        "qtrace capture exited 1 without a summary: ImportError: cannot import name 'X'",
        exit_code=1,
        unstartable="passes a host PCI device through",
    )
    assert named.category is Category.QTRACE_BROKEN
    assert named.phrase == "qtrace does not start: ImportError: cannot import name 'X'"


def test_the_probes_generic_codes_are_said_in_words() -> None:
    named = short_reason("error", "the guest reported: DONE fail target-not-type0-or-1")
    assert named.phrase == (
        "probe failed: a CardBus (type 2) header; the probe drives type 0 and 1 functions "
        "(target-not-type0-or-1)"
    )


def test_a_backend_process_that_failed_is_a_backend_reason() -> None:
    named = short_reason(
        "error", "the vhost-user backend process ended before it listened (exit code 3)"
    )
    assert named.category is Category.BACKEND
    assert named.phrase == "the vhost-user backend process ended before it listened (exit code 3)"
