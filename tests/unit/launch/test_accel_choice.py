"""--accel auto falls back to TCG without KVM; --accel kvm without KVM is a clear error."""

from __future__ import annotations

import pytest

from qtrace.errors import KvmUnavailable
from qtrace.launch import capture as capture_module
from qtrace.trace.kinds import Accel, AccelChoice


class _Observer:
    def __init__(self) -> None:
        self.said: list[str] = []

    def status(self, text: str) -> None:
        self.said.append(text)

    def progress(self, *args: object) -> None:
        return None


def test_auto_falls_back_to_tcg_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        capture_module, "kvm_usable", lambda: (False, "cannot open /dev/kvm: No such file")
    )
    observer = _Observer()
    assert capture_module._choose_accel(AccelChoice.AUTO, observer) is Accel.TCG
    assert "No such file" in observer.said[0]


def test_auto_prefers_kvm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture_module, "kvm_usable", lambda: (True, "KVM_CREATE_VM succeeded"))
    assert capture_module._choose_accel(AccelChoice.AUTO, _Observer()) is Accel.KVM


def test_kvm_requested_without_kvm_is_an_environment_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        capture_module, "kvm_usable", lambda: (False, "KVM_CREATE_VM failed: Permission denied")
    )
    with pytest.raises(KvmUnavailable) as info:
        capture_module._choose_accel(AccelChoice.KVM, _Observer())
    assert info.value.exit_code == 3
    assert "--accel tcg" in (info.value.hint or "")


def test_a_named_accelerator_is_used_as_asked_when_kvm_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(capture_module, "kvm_usable", lambda: (True, "KVM_CREATE_VM succeeded"))
    assert capture_module._choose_accel(AccelChoice.TCG, _Observer()) is Accel.TCG
    assert capture_module._choose_accel(AccelChoice.KVM, _Observer()) is Accel.KVM
