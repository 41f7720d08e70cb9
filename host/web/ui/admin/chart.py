"""The dashboard's chart of messages per minute, as geometry for an inline SVG.

The server computes every bar (the template draws them, the live script moves them
to the numbers of an update, both from this one function): no chart library. Each
minute has two bars side by side, in and out, scaled to the busiest minute; the
numbers themselves are in the table under the chart (the accessible version).
"""

from __future__ import annotations

from typing import Any

from host.traffic import Minute

WIDTH = 600
HEIGHT = 120
SLOT = 10  # pixels per minute: two bars of BAR and a gap
BAR = 4


def chart(minutes: list[Minute]) -> dict[str, Any]:
    """``{"width", "height", "top", "bars": [{"x", "in": [y, h], "out": [y, h]}...]}``
    with ``top`` the count the chart's height stands for."""
    top = max([1, *(m.inbound for m in minutes), *(m.outbound for m in minutes)])
    bars = []
    for i, m in enumerate(minutes):
        bars.append({"x": i * SLOT, "minute": m.start,
                     "in": _bar(m.inbound, top), "out": _bar(m.outbound, top)})
    return {"width": max(WIDTH, len(minutes) * SLOT), "height": HEIGHT, "top": top,
            "bar": BAR, "bars": bars}


def _bar(count: int, top: int) -> list[int]:
    """[y, height] of a bar of ``count`` (at least 1 pixel high when not 0)."""
    height = 0 if count <= 0 else max(1, round(count * HEIGHT / top))
    return [HEIGHT - height, height]
