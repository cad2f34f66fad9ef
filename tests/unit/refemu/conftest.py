"""Fixtures for the reference-emulator tests."""

from __future__ import annotations

import pytest
from refemu_nic import Nic


@pytest.fixture
def nic() -> Nic:
    return Nic()
