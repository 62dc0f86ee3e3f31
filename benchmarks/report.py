"""Render benchmark results: a console table, a Markdown table (for docs/benchmarks.md), JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from .harness import BenchResult, Figure

COLUMNS = ("benchmark", "metric", "measured", "anchor / baseline", "ratio", "target", "verdict")


def _num(value: float | None, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return "-"
    magnitude = abs(value)
    if magnitude >= 10000:
        text = f"{value:,.0f}"
    elif magnitude >= 100:
        text = f"{value:.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    elif magnitude >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".rstrip()


def _row(result: BenchResult, figure: Figure) -> tuple[str, ...]:
    anchor = "-"
    if figure.anchor is not None:
        anchor = f"{figure.anchor}: {_num(figure.anchor_value, figure.unit)}"
    ratio = figure.ratio
    target = figure.target.describe(figure.unit) if figure.target is not None else "-"
    metric = figure.metric + (f" ({figure.note})" if figure.note else "")
    return (
        result.name,
        metric,
        _num(figure.value, figure.unit),
        anchor,
        "-" if ratio is None else f"{ratio:.3g}x",
        target,
        figure.verdict or "-",
    )


def rows(results: Sequence[BenchResult]) -> list[tuple[str, ...]]:
    return [_row(result, figure) for result in results for figure in result.figures]


def console_table(results: Sequence[BenchResult]) -> str:
    table = [COLUMNS, *rows(results)]
    widths = [max(len(row[col]) for row in table) for col in range(len(COLUMNS))]
    lines = []
    for index, row in enumerate(table):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(results: Sequence[BenchResult]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    out = [line(COLUMNS), line(["---"] * len(COLUMNS))]
    out.extend(line(row) for row in rows(results))
    return "\n".join(out)


def to_json(results: Sequence[BenchResult], machine: dict[str, Any]) -> str:
    payload = {"machine": machine, "results": [result.as_dict() for result in results]}
    return json.dumps(payload, indent=2, default=_jsonable)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def from_json(data: dict[str, Any]) -> BenchResult:
    """Rebuild a result that a child process wrote (figures with their targets)."""
    from .harness import Target

    result = BenchResult(data["name"], data["scale"], details=data.get("details", {}))
    result.seconds = float(data.get("seconds", 0.0))
    for fig in data["figures"]:
        target = None
        if fig.get("target_spec"):
            target = Target(**fig["target_spec"])
        result.add(
            fig["metric"],
            _nan(fig["value"]),
            fig["unit"],
            fig.get("anchor"),
            None if fig.get("anchor_value") is None else _nan(fig["anchor_value"]),
            target,
            fig.get("note", ""),
            fig.get("paired_ratio"),
        )
    return result


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)
