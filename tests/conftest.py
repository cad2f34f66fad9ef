"""Suite-wide test settings.

Hypothesis: one profile for every property test, without per-example deadlines or the
too-slow health check, so a loaded machine (CI's two cores also run QEMU builds) cannot make
a property test fail for timing rather than for behaviour. ``HYPOTHESIS_PROFILE`` picks
another registered profile (``thorough``: more examples, for a local hunt).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "qtrace",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("thorough", parent=settings.get_profile("qtrace"), max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "qtrace"))
