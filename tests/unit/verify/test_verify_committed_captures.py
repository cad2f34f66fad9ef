"""The model agrees with every real capture committed under reports/captures/ (QEMU 10.2.2,
10.0.13 and 7.2; KVM and TCG; probe and Linux guests). These captures are real runs, so
they keep the replay honest without Docker; the integration tests add fresh ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtrace.verify import verify_file

CAPTURES = sorted((Path(__file__).parents[3] / "reports" / "captures").glob("e1000-*"))


@pytest.mark.parametrize("capture", CAPTURES, ids=[c.name for c in CAPTURES])
def test_committed_capture_verifies_clean(capture: Path) -> None:
    result = verify_file(capture / "trace.jsonl", "e1000")
    assert result.ok, (result.mismatches[:3], result.event_mismatches[:3])
    assert result.reads_compared > (1000 if "linux" in capture.name else 30)
