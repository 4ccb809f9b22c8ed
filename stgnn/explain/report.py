"""``stgnn explain``: PNG and CSV files that explain a trained model and one of its forecasts.

Written into the output folder:

* ``attribution.csv`` -- integrated-gradients attribution of the forecast of one sensor at one
  time (the point forecast -- mean or median -- of a probabilistic head) to every input (input
  step x sensor x channel), in the readings' units;
  ``sensor_importance.csv`` -- the sensors ranked by their total absolute attribution;
  ``attribution.png`` -- a step x sensor heat map of the most important sensors and a bar chart.
* Models with a learned adjacency (Graph WaveNet): ``adaptive_adjacency.csv`` (dense, rows =
  source sensor, columns = target sensor), ``adaptive_top_edges.csv`` (the ``top_k`` strongest
  edges between distinct sensors), ``adaptive_adjacency.png`` (heat map) and, when the sensors
  have coordinates, ``adaptive_edges_map.png`` (those edges drawn on the sensor map).
* Models that record attention: ``attention_<name>.csv`` / ``.png`` for every map, averaged over
  the windows of a period (``attention_clusters.csv`` maps sensors to the groups that attend to
  each other, for a model that records ``patch_clusters``).
* ``summary.json`` -- the forecast, the truth, the baseline forecast, the attribution's
  completeness gap, the top sensors and the files written.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from stgnn.data.preview import preview
from stgnn.explain.attribution import Attribution, integrated_gradients
from stgnn.explain.maps import adaptive_adjacency, attention_recorder, average_attention, top_edges
from stgnn.models.heads import DistributionalForecaster
from stgnn.training.trainer import Experiment

__all__ = ["explain_forecast", "forecast_window"]

_HEAT_SENSORS = 20  # sensors shown in the attribution heat map


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("explain: writing PNGs needs matplotlib: pip install 'stgnn[plot]'") from exc
    return plt


def forecast_window(exp: Experiment, sensor: str, time: str | pd.Timestamp, horizon: int) -> tuple[int, int, int]:
    """``(node index, window start, target step)``: the forecast of ``sensor`` for ``time``, ``horizon`` steps ahead.

    The window's last input step (the forecast origin) is ``horizon`` steps before ``time``.

    Raises:
        ValueError: Unknown sensor id, a time that is not on the data's grid, a horizon out of
            range, or too little history before the origin (each message names the value).
    """
    ids = exp.dataset.node_ids
    if str(sensor) not in ids:
        raise ValueError(f"sensor {sensor!r}: not a sensor of {exp.dataset.name} ({preview(ids)})")
    node = ids.index(str(sensor))
    if not 1 <= horizon <= exp.spec.horizon:
        raise ValueError(f"horizon {horizon}: must be in 1..{exp.spec.horizon}")
    try:
        stamp = pd.Timestamp(time)
    except ValueError as exc:
        raise ValueError(f"time {time!r}: not a timestamp ({exc})") from exc
    stamps = exp.dataset.timestamps
    step = pd.Timedelta(minutes=exp.dataset.interval_minutes)
    offset = (stamp - stamps[0]) / step
    last_allowed = stamps[-1] + horizon * step  # a forecast past the data's end is still made
    if offset != int(offset) or stamp > last_allowed or stamp < stamps[0]:
        raise ValueError(f"time {time}: not a step of {exp.dataset.name} ({stamps[0]} .. {stamps[-1]}, every "
                         f"{exp.dataset.interval_minutes} min; up to {horizon} steps past the end)")
    target = int(offset)
    start = target - horizon - exp.spec.input_len + 1
    if start < 0:
        earliest = stamps[exp.spec.input_len - 1] + horizon * step
        raise ValueError(f"time {time}: a forecast {horizon} steps ahead needs {exp.spec.input_len} steps of "
                         f"history before it; the earliest is {earliest}")
    return node, start, target


def _attribution_baseline(exp: Experiment, x: Tensor) -> Tensor:
    """Zeros (training means of the standardised channels), with the calendar channels kept as they are."""
    base = torch.zeros_like(x)
    user = exp.dataset.user_covariates
    calendar = len(exp.config.data.covariates)
    first = x.shape[-1] - calendar - (0 if user is None else user.num_channels)  # after the reading features
    base[..., first : first + calendar] = x[..., first : first + calendar]
    return base


def _ahead(horizon: int) -> str:
    return f"{horizon} step{'s' if horizon != 1 else ''} ahead"


def _write_csv(path: Path, header: list[str], rows: list[tuple[Any, ...]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _heatmap(plt: Any, matrix: np.ndarray, path: Path, title: str, xlabel: str, ylabel: str,
             xticks: list[str] | None = None, yticks: list[str] | None = None, diverging: bool = False) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 6))
    if diverging:
        bound = float(np.abs(matrix).max()) or 1.0
        image = ax.imshow(matrix, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    else:
        image = ax.imshow(matrix, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax)
    for ticks, setter, rotation in ((xticks, ax.set_xticks, 90), (yticks, ax.set_yticks, 0)):
        if ticks is not None and len(ticks) <= 40:
            setter(range(len(ticks)), ticks, rotation=rotation, fontsize=7)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_attribution(exp: Experiment, out: Path, plt: Any, attr: Attribution, scale: float, node: int,
                       start: int, stamp: pd.Timestamp, horizon: int) -> list[dict[str, Any]]:
    ids, names = exp.dataset.node_ids, exp.data.channel_names
    values = attr.values.cpu().numpy() * scale  # [T_in, N, F_in] in the readings' units
    inputs = exp.data.inputs[start : start + exp.spec.input_len].numpy()
    step = pd.Timedelta(minutes=exp.dataset.interval_minutes)
    t_in = exp.spec.input_len
    stamps = [exp.dataset.timestamps[0] + (start + i) * step for i in range(t_in)]
    rows = [(str(stamps[i]), i - t_in + 1, ids[n], names[f], float(inputs[i, n, f]), float(values[i, n, f]))
            for i in range(t_in) for n in range(len(ids)) for f in range(len(names))]
    _write_csv(out / "attribution.csv", ["timestamp", "step", "sensor", "channel", "input_scaled", "attribution"],
               rows)
    importance = np.abs(values).sum(axis=(0, 2))
    signed = values.sum(axis=(0, 2))
    order = np.argsort(-importance, kind="stable")
    total = float(importance.sum()) or 1.0
    ranking = [{"rank": r + 1, "sensor": ids[n], "importance": float(importance[n]),
                "share": float(importance[n]) / total, "signed": float(signed[n])} for r, n in enumerate(order)]
    _write_csv(out / "sensor_importance.csv", ["rank", "sensor", "importance", "share", "signed"],
               [tuple(r.values()) for r in ranking])
    shown = order[:_HEAT_SENSORS]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
    heat = values.sum(axis=2)[:, shown].T  # [sensors, T_in]
    bound = float(np.abs(heat).max()) or 1.0
    image = axes[0].imshow(heat, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    fig.colorbar(image, ax=axes[0], label=f"attribution [{exp.dataset.units or 'reading units'}]")
    axes[0].set_yticks(range(len(shown)), [ids[n] + (" *" if n == node else "") for n in shown], fontsize=7)
    axes[0].set_xticks(range(t_in), [str(i - t_in + 1) for i in range(t_in)], fontsize=7)
    axes[0].set_xlabel("input step (0 = forecast origin)")
    axes[0].set_title(f"integrated gradients: {ids[node]} at {stamp} ({_ahead(horizon)})", fontsize=10)
    axes[1].barh(range(len(shown)), importance[shown][::-1], color="tab:blue")
    axes[1].set_yticks(range(len(shown)), [ids[n] for n in shown][::-1], fontsize=7)
    axes[1].set_xlabel("total |attribution|")
    axes[1].set_title("sensor importance", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "attribution.png", dpi=110)
    plt.close(fig)
    return ranking


def _write_adjacency(exp: Experiment, out: Path, plt: Any, adj: Tensor, top_k: int, node: int) -> list[str]:
    ids = exp.dataset.node_ids
    pd.DataFrame(adj.numpy(), index=pd.Index(ids, name="source"), columns=ids).to_csv(
        out / "adaptive_adjacency.csv")
    edges = top_edges(adj, ids, top_k)
    _write_csv(out / "adaptive_top_edges.csv", ["rank", "source", "target", "weight"],
               [(r + 1, *e) for r, e in enumerate(edges)])
    _heatmap(plt, adj.numpy(), out / "adaptive_adjacency.png",
             f"{exp.config.model}: learned adaptive adjacency (row = source, column = target)",
             "target sensor", "source sensor", ids, ids)
    written = ["adaptive_adjacency.csv", "adaptive_top_edges.csv", "adaptive_adjacency.png"]
    coords = exp.dataset.graph.coordinates
    if coords is None:
        return written
    lat, lon = coords[:, 0].numpy(), coords[:, 1].numpy()
    position = {s: i for i, s in enumerate(ids)}
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.scatter(lon, lat, s=10, color="0.6", zorder=1, label="sensor")
    ax.scatter(lon[node], lat[node], s=60, color="tab:red", zorder=3, label=f"sensor {ids[node]}")
    strongest = edges[0][2] if edges else 1.0
    for source, target, weight in edges:
        a, b = position[source], position[target]
        ax.annotate("", xy=(lon[b], lat[b]), xytext=(lon[a], lat[a]), zorder=2,
                    arrowprops={"arrowstyle": "->", "color": "tab:blue", "alpha": 0.8,
                                "lw": 0.5 + 2.5 * weight / strongest})
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(f"{exp.config.model}: the {len(edges)} strongest learned edges", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "adaptive_edges_map.png", dpi=110)
    plt.close(fig)
    return [*written, "adaptive_edges_map.png"]


def _axis_labels(exp: Experiment, size: int) -> list[str] | None:
    """Sensor ids for an axis of ``N`` entries, input steps for one of ``T_in``, else plain indices.

    A model that attends between groups of sensors (``patch_clusters``, stpatch) keeps indices.
    """
    if size == exp.dataset.num_nodes and getattr(exp.model, "patch_clusters", None) is None:
        return exp.dataset.node_ids
    if size == exp.spec.input_len:
        return [str(i - size + 1) for i in range(size)]
    return None


def _write_attention(exp: Experiment, out: Path, plt: Any, split: str,
                     max_windows: int) -> tuple[list[str], int, list[str]]:
    starts = exp.data.splits[split][:max_windows]
    batch_size = exp.config.train.eval_batch_size
    batches = (exp.data.batch(starts[i : i + batch_size]).to(exp.device) for i in range(0, starts.numel(), batch_size))
    maps, windows = average_attention(exp.model, batches, exp.edge_index, exp.edge_weight)
    written = []
    clusters = getattr(exp.model, "patch_clusters", None)
    if isinstance(clusters, Tensor) and clusters.numel() == exp.dataset.num_nodes:
        _write_csv(out / "attention_clusters.csv", ["sensor", "cluster"],
                   list(zip(exp.dataset.node_ids, clusters.cpu().tolist(), strict=True)))
        written.append("attention_clusters.csv")
    for key, value in maps.items():
        matrix = value.numpy()
        name = f"attention_{key}"
        if matrix.ndim == 1:
            _write_csv(out / f"{name}.csv", ["index", "value"], [(i, v.item()) for i, v in enumerate(matrix)])
            written.append(f"{name}.csv")
            continue
        matrix = matrix.reshape(matrix.shape[0], -1)
        rows, cols = _axis_labels(exp, matrix.shape[0]), _axis_labels(exp, matrix.shape[1])
        pd.DataFrame(matrix, index=rows, columns=cols).to_csv(out / f"{name}.csv")
        _heatmap(plt, matrix, out / f"{name}.png",
                 f"{exp.config.model}: attention {key}, mean over {windows} {split} windows", "key", "query",
                 cols, rows)
        written += [f"{name}.csv", f"{name}.png"]
    return written, windows, list(maps)


def explain_forecast(
    exp: Experiment,
    output: str | Path,
    *,
    sensor: str,
    time: str | pd.Timestamp,
    horizon: int = 1,
    steps: int = 64,
    top_k: int = 10,
    split: str = "test",
    max_windows: int = 512,
) -> dict[str, Any]:
    """Explain ``exp``'s model and its forecast of ``sensor`` for ``time``; write the files listed above.

    Args:
        exp: A trained experiment (e.g. from :func:`~stgnn.training.trainer.experiment_from_checkpoint`).
        output: Folder for the files (created).
        sensor: Sensor id of the forecast explained.
        time: The timestamp forecast.
        horizon: Steps ahead (the forecast made ``horizon`` steps before ``time``). Default ``1``.
        steps: Integration points of integrated gradients. Default ``64``.
        top_k: Learned edges listed and drawn. Default ``10``.
        split: The period whose windows the attention maps are averaged over. Default ``"test"``.
        max_windows: At most this many (consecutive) windows of ``split``. Default ``512``.

    Returns:
        The content of ``summary.json``.

    Raises:
        ValueError: A bad sensor, time or horizon (see :func:`forecast_window`), a model whose
            forecast does not depend on its inputs, or a split without windows.
        ImportError: matplotlib is missing.
    """
    plt = _pyplot()
    node, start, target = forecast_window(exp, sensor, time, horizon)
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    batch = exp.data.batch(torch.tensor([start])).to(exp.device)
    baseline = _attribution_baseline(exp, batch.x[0])
    model = exp.model
    point = (lambda out: model.distribution(out).point) if isinstance(model, DistributionalForecaster) else None
    attr = integrated_gradients(model, batch, exp.edge_index, exp.edge_weight, horizon=horizon - 1, node=node,
                                baseline=baseline, steps=steps, point=point)
    target_scaler = exp.data.target_scaler
    scale, shift = float(target_scaler.std[0]), float(target_scaler.mean[0])
    stamp = pd.Timestamp(time)
    ranking = _write_attribution(exp, out, plt, attr, scale, node, start, stamp, horizon)
    written = ["attribution.csv", "sensor_importance.csv", "attribution.png"]
    truth = None
    if target < exp.dataset.num_steps and bool(exp.dataset.mask[target, node]):
        truth = float(exp.dataset.series[target, node, exp.data.target_features[0]])
    summary: dict[str, Any] = {
        "model": exp.config.model, "dataset": exp.dataset.name, "sensor": exp.dataset.node_ids[node],
        "time": str(stamp), "horizon": horizon,
        "origin": str(stamp - horizon * pd.Timedelta(minutes=exp.dataset.interval_minutes)),
        "forecast": attr.output * scale + shift, "truth": truth,
        "baseline_forecast": attr.baseline_output * scale + shift,
        "attribution_sum": float(attr.values.sum()) * scale, "completeness_gap": attr.delta * scale,
        "integration_steps": steps,
        "baseline": "training mean of every standardised channel; calendar covariates as observed",
        "top_sensors": ranking[:top_k],
    }
    adj = adaptive_adjacency(exp.model)
    if adj is not None:
        written += _write_adjacency(exp, out, plt, adj, top_k, node)
        summary["top_learned_edges"] = [{"source": s, "target": t, "weight": w}
                                        for s, t, w in top_edges(adj, exp.dataset.node_ids, top_k)]
    if attention_recorder(exp.model) is not None:
        if exp.data.num_windows(split) == 0:
            raise ValueError(f"split {split!r} has no windows to average the attention maps over")
        files, windows, names = _write_attention(exp, out, plt, split, max_windows)
        written += files
        summary["attention"] = {"split": split, "windows": windows, "maps": names}
    summary["files"] = [*written, "summary.json"]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
