"""Imported by Python at start-up when this folder is on PYTHONPATH: a process whose wall clock
(``time.time``) is ``BRIDGE_TEST_CLOCK_SKEW_S`` seconds off, as on a host whose clock drifted.
The monotonic clock is left alone (it does not drift with the time of day)."""

import os
import time

_skew = float(os.environ.get("BRIDGE_TEST_CLOCK_SKEW_S") or 0)
if _skew:
    _real_time = time.time

    def _skewed_time() -> float:
        return _real_time() + _skew

    time.time = _skewed_time
