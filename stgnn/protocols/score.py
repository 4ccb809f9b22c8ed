"""Score a predictions file made by any tool under the T-GCN protocol or the DCRNN-style one.

Two layouts are read:

* the T-GCN authors' ``test_result.csv``: no header, one row per (test window, predicted step) in
  window order, one column per sensor in the dataset's order, de-normalised values;
* this package's ``stgnn predict`` CSV: columns ``origin, timestamp, horizon, sensor, prediction``
  (``truth`` and other columns are ignored), one row per (origin, step, sensor); sensors are
  matched by id and every test window of the protocol must be present.

The truth always comes from the dataset, never from the file.  Under the DCRNN-style protocol
(the package's default: chronological split of all windows, masked metrics at horizons 3, 6, 12)
the rows of either layout are the test windows of :func:`stgnn.data.windows.split_windows`.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from stgnn.data.dataset import TrafficDataset
from stgnn.data.windows import split_windows
from stgnn.metrics import MaskedMetrics
from stgnn.protocols.tgcn import tgcn_metrics, tgcn_windows, train_size, window_count

__all__ = [
    "infer_pre_len",
    "read_predict_csv",
    "read_tgcn_result",
    "score_dcrnn_predictions",
    "score_predictions",
    "sniff_layout",
]

_PREDICT_COLUMNS = {"origin", "horizon", "sensor", "prediction"}


def sniff_layout(path: Path) -> str:
    """``"stgnn"`` when the first line is a header naming our predict columns, else ``"tgcn"``."""
    with open(path, newline="") as fh:
        first = next(csv.reader(fh), None)
    if first is None:
        raise ValueError(f"{path}: empty file")
    return "stgnn" if _PREDICT_COLUMNS <= {c.strip() for c in first} else "tgcn"


def infer_pre_len(path: Path, num_steps: int, seq_len: int) -> int:
    """The ``pre_len`` a predictions file was made for.

    A predict CSV: its largest ``horizon``.  An authors'-layout file: the ``P`` whose window count
    times ``P`` equals the file's rows, ``(T - int(0.8 T) - seq_len - P) * P``, with at least as
    many windows as steps.

    Raises:
        ValueError: no (or more than one) ``pre_len`` fits; the message asks for ``--pre-len``.
    """
    if sniff_layout(path) == "stgnn":
        return int(pd.read_csv(path, usecols=["horizon"])["horizon"].max())
    with open(path) as fh:
        rows = sum(1 for line in fh if line.strip())
    test_len = num_steps - train_size(num_steps)
    # (W(P) * P = rows has two roots, P and W; a file has at least as many windows as steps)
    fits = [p for p in range(1, test_len) if window_count(test_len, seq_len, p) * p == rows
            and p <= window_count(test_len, seq_len, p)]
    if len(fits) != 1:
        raise ValueError(f"{path}: {rows} rows fit no single pre_len of the T-GCN protocol's test set "
                         f"({test_len} steps, seq_len {seq_len}; candidates {fits}); give --pre-len")
    return fits[0]


def read_tgcn_result(path: Path, num_windows: int, pre_len: int, num_nodes: int) -> np.ndarray:
    """Read an authors'-layout file into ``[num_windows, pre_len, num_nodes]``.

    Raises:
        ValueError: not numeric, or the row / column count is not the protocol's (the message
            names the file, what it has and what was expected).
    """
    try:
        values = pd.read_csv(path, header=None).to_numpy(dtype=np.float64)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: not a headerless numeric CSV ({exc})") from exc
    rows = num_windows * pre_len
    if values.shape != (rows, num_nodes):
        raise ValueError(f"{path}: {values.shape[0]} rows x {values.shape[1]} columns; the T-GCN protocol's "
                         f"test set with pre_len={pre_len} needs {num_windows} windows x {pre_len} steps = "
                         f"{rows} rows and {num_nodes} columns (one per sensor)")
    return values.reshape(num_windows, pre_len, num_nodes)


def read_predict_csv(
    path: Path, origins: pd.DatetimeIndex, pre_len: int, node_ids: Sequence[str]
) -> tuple[np.ndarray, int]:
    """Read a ``stgnn predict`` CSV into ``[len(origins), pre_len, N]`` for the given origins.

    Returns:
        The predictions and the number of rows outside the protocol's test windows (reported
        by the caller, not silently dropped).

    Raises:
        ValueError: columns missing, sensors missing or unknown, duplicate rows, or a test window /
            step absent (the message names the file and the first gaps).
    """
    frame = pd.read_csv(path)
    missing = _PREDICT_COLUMNS - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    frame["sensor"] = frame["sensor"].astype(str)
    ids = [str(i) for i in node_ids]
    unknown = sorted(set(frame["sensor"]) - set(ids))
    if unknown:
        raise ValueError(f"{path}: sensor(s) not in the dataset: {unknown[:10]}")
    absent = [i for i in ids if i not in set(frame["sensor"])]
    if absent:
        raise ValueError(f"{path}: {len(absent)} sensor(s) of the dataset have no prediction: {absent[:10]}")
    frame["origin"] = pd.to_datetime(frame["origin"])
    if frame.duplicated(["origin", "horizon", "sensor"]).any():
        raise ValueError(f"{path}: duplicate (origin, horizon, sensor) rows")
    wanted = frame["origin"].isin(origins) & frame["horizon"].between(1, pre_len)
    if not np.isfinite(frame.loc[wanted, "prediction"].to_numpy(dtype=np.float64)).all():
        raise ValueError(f"{path}: NaN or infinite predictions inside the test windows")
    table = frame[wanted].pivot(index=["origin", "horizon"], columns="sensor", values="prediction")
    full = pd.MultiIndex.from_product([origins, range(1, pre_len + 1)], names=["origin", "horizon"])
    values = table.reindex(index=full, columns=ids).to_numpy(dtype=np.float64)
    holes = np.argwhere(np.isnan(values))
    if len(holes):
        first = ", ".join(f"{full[r][0]} step {full[r][1]} sensor {ids[c]}" for r, c in holes[:3])
        raise ValueError(f"{path}: {len(holes)} of {values.size} (test window, step, sensor) predictions of the "
                         f"T-GCN protocol are missing (first: {first})")
    return values.reshape(len(origins), pre_len, len(ids)), int((~wanted).sum())


def score_predictions(
    path: str | Path,
    series: np.ndarray,
    timestamps: pd.DatetimeIndex,
    node_ids: Sequence[str],
    *,
    seq_len: int,
    pre_len: int,
) -> dict[str, float | int | str]:
    """Score the predictions in ``path`` against ``series`` ``[T, N]`` under the T-GCN protocol.

    Returns:
        The five metrics plus ``layout``, ``windows`` and ``ignored_rows`` (rows of a predict CSV
        outside the protocol's test windows).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file does not fit the protocol's test set (see the readers).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    values = np.asarray(series, dtype=np.float64)
    n_train = train_size(values.shape[0])
    count = window_count(values.shape[0] - n_train, seq_len, pre_len)
    truth = tgcn_windows(values[n_train:], seq_len, pre_len)[1].numpy()
    layout = sniff_layout(path)
    ignored = 0
    if layout == "tgcn":
        pred = read_tgcn_result(path, count, pre_len, values.shape[1])
    else:
        origins = timestamps[n_train + seq_len - 1 : n_train + seq_len - 1 + count]
        pred, ignored = read_predict_csv(path, pd.DatetimeIndex(origins), pre_len, node_ids)
    return {**tgcn_metrics(truth, pred), "layout": layout, "windows": count, "ignored_rows": ignored}


def score_dcrnn_predictions(
    path: str | Path, dataset: TrafficDataset, *, input_len: int = 12, horizon: int = 12
) -> dict[str, object]:
    """Score ``path`` under the DCRNN-style protocol: masked MAE / RMSE / MAPE at 3, 6, 12 steps.

    The test windows are those of :func:`~stgnn.data.windows.split_windows` with the dataset's
    split; readings the dataset's mask marks missing are left out.

    Returns:
        :meth:`stgnn.metrics.MaskedMetrics.compute` plus ``layout``, ``windows`` and ``ignored_rows``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    if dataset.num_features != 1:
        raise ValueError(f"{dataset.name}: scoring a predictions file needs one feature, the dataset has "
                         f"{dataset.num_features}")
    starts = split_windows(dataset.num_steps, input_len, horizon, dataset.split)["test"]
    layout = sniff_layout(path)
    ignored = 0
    if layout == "tgcn":
        pred = read_tgcn_result(path, len(starts), horizon, dataset.num_nodes)
    else:
        origins = pd.DatetimeIndex(dataset.timestamps[(starts + input_len - 1).numpy()])
        pred, ignored = read_predict_csv(path, origins, horizon, dataset.node_ids)
    idx = starts[:, None] + input_len + torch.arange(horizon)  # [W, H] target steps
    truth = dataset.series[idx][..., :1].double()  # [W, H, N, 1]
    # the dataset's mask already marks missing readings (zeros where 0 means missing)
    metrics = MaskedMetrics(horizons=[h for h in (3, 6, 12) if h <= horizon], null_value=None)
    metrics.update(torch.tensor(pred)[..., None], truth, dataset.mask[idx])
    return {**metrics.compute(), "layout": layout, "windows": len(starts), "ignored_rows": ignored}
