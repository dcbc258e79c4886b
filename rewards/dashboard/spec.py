"""What a figure is: its titles, chart, and the function that computes it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CHARTS = ("bar", "line", "stacked")


@dataclass(frozen=True)
class FigureSpec:
    name: str
    title: str
    title_cy: str
    description: str
    chart: str
    x: str
    y: list[str]
    compute: Callable[..., Any] = field(repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "title_cy": self.title_cy,
                "description": self.description, "chart": self.chart, "x": self.x,
                "y": list(self.y)}
