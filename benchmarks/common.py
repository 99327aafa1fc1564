"""What the benchmark scripts share (they run as ``python benchmarks/<name>.py``, so this
folder is on ``sys.path``)."""

from __future__ import annotations

import statistics


def spread(values: list[float], digits: int = 3) -> str:
    """``"min / median / max"`` of ``values``, each with ``digits`` decimals."""
    return " / ".join(f"{v:.{digits}f}" for v in (min(values), statistics.median(values), max(values)))
