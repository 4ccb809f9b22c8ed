"""Horizon tables: our metrics beside the published ones, as Markdown."""

from __future__ import annotations

from typing import Any

from stgnn.published import Published

__all__ = ["horizon_table", "interval_table"]

_LABELS = {"3": "@3 (15 min)", "6": "@6 (30 min)", "12": "@12 (60 min)", "average": "average 1-12"}


def _label(key: str, interval_minutes: int) -> str:
    if interval_minutes == 5:
        return _LABELS.get(key, key)
    return key if key == "average" else f"@{key} ({int(key) * interval_minutes} min)"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def horizon_table(horizons: dict[str, dict[str, Any]], published: Published | None = None,
                  interval_minutes: int = 5) -> str:
    """Markdown table of MAE / RMSE / MAPE per horizon, ours and (where known) published.

    Args:
        horizons: The ``"horizons"`` part of ``metrics.json``.
        published: Published numbers for the same model and dataset, or ``None``.
        interval_minutes: Step length, for the horizon labels.
    """
    lines = [
        "| horizon | ours MAE | ours RMSE | ours MAPE % | published MAE | published RMSE | published MAPE % |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, row in horizons.items():
        label = _label(key, interval_minutes)
        pub = published.horizons.get(key) if published else None
        pub_cells = [_fmt(v) for v in pub] if pub else ["-", "-", "-"]
        lines.append(
            f"| {label} | {_fmt(row.get('mae'))} | {_fmt(row.get('rmse'))} | {_fmt(row.get('mape'))} | "
            + " | ".join(pub_cells) + " |"
        )
    if published:
        lines.append(f"\nPublished: {published.source}.")
    return "\n".join(lines)


def interval_table(horizons: dict[str, dict[str, Any]], interval_minutes: int = 5) -> str:
    """Markdown table of CRPS and the coverage / mean width of the 80 % and 95 % intervals per horizon.

    Args:
        horizons: The ``"horizons"`` part of a probabilistic run's ``metrics.json``.
        interval_minutes: Step length, for the horizon labels.
    """
    lines = [
        "| horizon | CRPS | coverage 80 % | width 80 % | coverage 95 % | width 95 % |",
        "|---|---|---|---|---|---|",
    ]
    for key, row in horizons.items():
        label = _label(key, interval_minutes)
        cells = [_fmt(row.get("crps"))]
        for level in ("80", "95"):
            cover = row.get(f"coverage_{level}")
            cells += ["-" if cover is None else f"{100 * cover:.1f} %", _fmt(row.get(f"width_{level}"))]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
