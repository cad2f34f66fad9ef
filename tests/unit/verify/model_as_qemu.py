"""A second model plays QEMU, so the live runner, generators and shrinker run without Docker.

Why a shared helper: every model's unit tests want the same fake (a fresh model on each
machine reset, placed as its pack's ``[model.qtest]`` says), to check that a model agrees
with itself over the random sequences and that a deliberately broken one is caught.
"""

from __future__ import annotations

from collections.abc import Callable

from qtrace.refemu import PciDevice
from qtrace.verify import VerifyDevice, verify_device
from qtrace.verify.steps import DEFAULT_BARS, ModelSide, Side

__all__ = ["ModelAsQemu"]


class ModelAsQemu:
    """``device``'s pack model (or ``make``) as the QEMU side of :func:`run_live`."""

    def __init__(self, device: str, make: Callable[[], PciDevice] | None = None) -> None:
        self.device: VerifyDevice = verify_device(device)
        self._make = make or self.device.model
        self.resets = 0
        self._side = self._fresh()

    def _fresh(self) -> ModelSide:
        setup = self.device.qtest
        assert setup is not None
        return ModelSide(self._make(), setup.slot, dict(setup.bars) or DEFAULT_BARS)

    @property
    def side(self) -> Side:
        return self._side

    def system_reset(self) -> None:
        self.resets += 1
        self._side = self._fresh()
