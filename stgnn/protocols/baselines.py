"""The statistical baselines of T-GCN's Table I: HA, SVR and ARIMA, as the authors define them.

They work on raw readings (the authors' ``Baselines/baselines.py`` does not scale them) and on the
protocol's windows (:func:`stgnn.protocols.tgcn.tgcn_windows`); each returns predictions
``[W, pre_len, N]`` for the test inputs.  scikit-learn and statsmodels are optional
dependencies (``pip install 'stgnn[tgcn]'``), imported only when SVR or ARIMA runs.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["STATISTICAL_BASELINES", "arima_forecast", "ha_forecast", "svr_forecast"]


def _check(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, pre_len: int) -> None:
    if train_x.ndim != 3 or train_y.ndim != 3 or test_x.ndim != 3:
        raise ValueError("windows must be [W, steps, N] arrays")
    if pre_len < 1:
        raise ValueError(f"pre_len must be >= 1, got {pre_len}")


def ha_forecast(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, pre_len: int) -> np.ndarray:
    """The paper's HA: each step is the mean of the last ``seq_len`` values, forecasts included.

    Step 1 is the mean of the input window; the window then drops its oldest value and takes
    the forecast in, and so on (the authors' rolling loop, written there for ``pre_len = 3``).
    This is the T-GCN paper's HA, not the seasonal HA of the DCRNN protocol (model ``ha``).
    The training windows are not used.
    """
    _check(train_x, train_y, test_x, pre_len)
    buf = np.asarray(test_x, dtype=np.float64)
    seq_len = buf.shape[1]
    out = []
    for _ in range(pre_len):
        step = buf[:, -seq_len:].mean(axis=1)
        out.append(step)
        buf = np.concatenate([buf, step[:, None]], axis=1)
    return np.stack(out, axis=1)


def svr_forecast(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, pre_len: int, **svr_kwargs: Any
) -> np.ndarray:
    """The paper's SVR: one linear-kernel SVR per sensor on its own input window.

    As the authors' code: the target of a training window is the mean of its ``pre_len`` future
    values, and the one predicted value is repeated for every step.  scikit-learn's ``SVR``
    defaults (``C = 1``, ``epsilon = 0.1``) with ``kernel="linear"``; ``svr_kwargs`` override them.
    """
    _check(train_x, train_y, test_x, pre_len)
    try:
        from sklearn.svm import SVR
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the SVR baseline needs scikit-learn: pip install 'stgnn[tgcn]'") from exc
    kwargs = {"kernel": "linear", **svr_kwargs}
    num_nodes = train_x.shape[2]
    out = np.empty((test_x.shape[0], pre_len, num_nodes))
    for n in range(num_nodes):
        model = SVR(**kwargs).fit(train_x[:, :, n], train_y[:, :, n].mean(axis=1))
        out[:, :, n] = model.predict(test_x[:, :, n])[:, None]
    return out


def arima_forecast(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    pre_len: int,
    *,
    train_series: np.ndarray,
    order: tuple[int, int, int] = (1, 0, 0),
    maxiter: int = 50,
    time_limit_s: float = 600.0,
) -> np.ndarray:
    """ARIMA per sensor: fit on the training period, forecast ``pre_len`` steps from every test window.

    The authors' script fits ``ARIMA(1, 0, 0)`` per sensor (on log speeds, predicting in sample);
    here each sensor's ``ARIMA(p, 0, 0)`` with a constant (statsmodels ``ARIMA``, state-space
    maximum likelihood) is fitted on its raw training-period series only, and the forecasts of a
    test window follow from the fitted parameters and the window's last ``p`` values, as
    statsmodels' own ``forecast`` computes them for an autoregression (checked in the tests).
    The fit is bounded: at most ``maxiter`` optimiser iterations per sensor, and the whole fit
    stops with an error once ``time_limit_s`` seconds have passed.

    Args:
        train_x, train_y: Unused (the fit uses the continuous training series).
        test_x: ``[W, seq_len, N]`` raw test inputs.
        pre_len: Forecast steps.
        train_series: ``[T_train, N]`` raw training-period readings.
        order: ``(p, 0, 0)`` with ``1 <= p <= seq_len``; differencing and MA terms are rejected.
        maxiter: Optimiser iterations per sensor.
        time_limit_s: Wall-clock budget of all fits together.

    Raises:
        ValueError: an unsupported order.
        TimeoutError: the fits took longer than ``time_limit_s``.
    """
    _check(train_x, train_y, test_x, pre_len)
    p, d, q = order
    if d != 0 or q != 0 or not 1 <= p <= test_x.shape[1]:
        raise ValueError(f"ARIMA order {order}: only (p, 0, 0) with 1 <= p <= seq_len ({test_x.shape[1]}) is supported")
    try:
        from statsmodels.tsa.arima.model import ARIMA
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the ARIMA baseline needs statsmodels: pip install 'stgnn[tgcn]'") from exc
    series = np.asarray(train_series, dtype=np.float64)
    num_nodes = series.shape[1]
    out = np.empty((test_x.shape[0], pre_len, num_nodes))
    start = time.monotonic()
    for n in range(num_nodes):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter of bounded fits; the bound is documented
            res = ARIMA(series[:, n], order=order, trend="c").fit(method_kwargs={"maxiter": maxiter})
        const, phi = float(res.params[0]), np.asarray(res.params[1 : 1 + p], dtype=np.float64)
        out[:, :, n] = ar_recursion(test_x[:, :, n], const, phi, pre_len)
        if time.monotonic() - start > time_limit_s:
            raise TimeoutError(f"ARIMA fits exceeded {time_limit_s} s after {n + 1} of {num_nodes} sensors")
    return out


def ar_recursion(windows: np.ndarray, mean: float, phi: np.ndarray, steps: int) -> np.ndarray:
    """Multi-step forecasts of ``x_t - mean = sum_i phi_i (x_{t-i} - mean)`` from each window.

    Args:
        windows: ``[W, L]`` histories (the last ``len(phi)`` values are used).
        mean: The process mean (statsmodels' ``const`` for a ``trend="c"`` ARIMA).
        phi: AR coefficients ``[p]`` (lag 1 first).
        steps: Forecast steps.

    Returns:
        ``[W, steps]``.
    """
    p = len(phi)
    hist = np.asarray(windows, dtype=np.float64)[:, -p:] - mean
    out = []
    for _ in range(steps):
        nxt = hist[:, ::-1] @ phi  # lag 1 = last column
        out.append(nxt)
        hist = np.concatenate([hist[:, 1:], nxt[:, None]], axis=1)
    return np.stack(out, axis=1) + mean


STATISTICAL_BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "ha": ha_forecast,
    "svr": svr_forecast,
    "arima": arima_forecast,
}
"""Name -> forecast function ``(train_x, train_y, test_x, pre_len, **kw) -> [W, pre_len, N]``."""
