"""Published benchmark numbers, printed beside ours.

Masked MAE / RMSE / MAPE (%) with null value 0, 12 steps in, 12 out, 5-minute
steps.  Sources: the original papers as tabulated in D2STGNN (VLDB 2022, Table 3);
PEMS04/08 are the BasicTS re-runs (arXiv 2310.06119, Table 7), averaged over the
12 horizons.  Los-loop numbers come from the T-GCN paper, which uses an 80/20
split and unmasked metrics on imputed data, so they are indicative only.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PUBLISHED", "TGCN_TABLE", "Published", "PublishedTGCN", "published_for", "tgcn_published_for"]

Cell = tuple[float, float, float | None]  # MAE, RMSE, MAPE %


@dataclass(frozen=True)
class Published:
    """Published numbers for one model on one dataset.

    Attributes:
        horizons: ``"3" / "6" / "12" / "average"`` -> (MAE, RMSE, MAPE %); absent keys
            were not published.
        source: Where the numbers come from.
    """

    horizons: dict[str, Cell]
    source: str


_D2 = "original paper, as tabulated in D2STGNN (VLDB 2022) Table 3"
_BASICTS = "BasicTS re-run (arXiv 2310.06119) Table 7, average of 12 horizons"
_TGCN = "T-GCN paper (80/20 split, unmasked, imputed data; recalled, not re-checked) - indicative only"

PUBLISHED: dict[tuple[str, str], Published] = {
    ("metr-la", "ha"): Published({"3": (4.79, 10.00, 11.70), "6": (5.47, 11.45, 13.50),
                                  "12": (6.99, 13.89, 17.54)}, _D2),
    ("metr-la", "lstm"): Published({"3": (3.44, 6.30, 9.60), "6": (3.77, 7.23, 10.09),
                                    "12": (4.37, 8.69, 14.00)}, _D2),
    ("metr-la", "stgcn"): Published({"3": (2.88, 5.74, 7.62), "6": (3.47, 7.24, 9.57),
                                     "12": (4.59, 9.40, 12.70)}, _D2),
    ("metr-la", "dcrnn"): Published({"3": (2.67, 5.17, 6.84), "6": (3.08, 6.30, 8.38),
                                     "12": (3.56, 7.52, 10.30)},
                                    "DCRNN authors' README after their 2018 bug fix"),
    ("metr-la", "gwnet"): Published({"3": (2.69, 5.15, 6.90), "6": (3.07, 6.22, 8.37),
                                     "12": (3.53, 7.37, 10.01)}, _D2),
    ("pems-bay", "ha"): Published({"3": (1.89, 4.30, 4.16), "6": (2.50, 5.82, 5.62),
                                   "12": (3.31, 7.54, 7.65)}, _D2),
    ("pems-bay", "lstm"): Published({"3": (2.05, 4.19, 4.80), "6": (2.20, 4.55, 5.20),
                                     "12": (2.37, 4.96, 5.70)}, _D2),
    ("pems-bay", "stgcn"): Published({"3": (1.36, 2.96, 2.90), "6": (1.81, 4.27, 4.17),
                                      "12": (2.49, 5.69, 5.79)}, _D2),
    ("pems-bay", "dcrnn"): Published({"3": (1.38, 2.95, 2.90), "6": (1.74, 3.97, 3.90),
                                      "12": (2.07, 4.74, 4.90)}, _D2),
    ("pems-bay", "gwnet"): Published({"3": (1.30, 2.74, 2.73), "6": (1.63, 3.70, 3.67),
                                      "12": (1.95, 4.52, 4.63)}, _D2),
    ("pems04", "stgcn"): Published({"average": (19.76, 31.51, 13.48)}, _BASICTS),
    ("pems04", "dcrnn"): Published({"average": (19.66, 31.18, 13.45)}, _BASICTS),
    ("pems04", "gwnet"): Published({"average": (18.80, 30.14, 13.19)}, _BASICTS),
    ("pems08", "stgcn"): Published({"average": (16.19, 25.51, 10.82)}, _BASICTS),
    ("pems08", "dcrnn"): Published({"average": (15.23, 24.17, 10.21)}, _BASICTS),
    ("pems08", "gwnet"): Published({"average": (14.67, 23.55, 9.46)}, _BASICTS),
    ("los-loop", "ha"): Published({"3": (4.01, 7.44, None)}, _TGCN),
}


def published_for(dataset: str, model: str) -> Published | None:
    """The published numbers for ``model`` on ``dataset``, if any."""
    return PUBLISHED.get((dataset, model))


# --- T-GCN protocol (Zhao et al., IEEE T-ITS 2020, Table I) -------------------------------------

TGCNCell = dict[str, float | None]  # rmse, mae, accuracy, r2, var (None: "*" in the paper / not recorded)


@dataclass(frozen=True)
class PublishedTGCN:
    """One row group of T-GCN's Table I: a model on a dataset at 15/30/45/60 min.

    Attributes:
        horizons: ``"15" / "30" / "45" / "60"`` (minutes) -> ``{"rmse", "mae", "accuracy", "r2",
            "var"}``; ``None`` where the paper prints "*" or the value was not recorded here.
        source: Where the numbers come from.
        verified: True only when each number was checked against the paper text.
    """

    horizons: dict[str, TGCNCell]
    source: str
    verified: bool


_TGCN_TABLE_I = (
    "T-GCN paper (Zhao et al., IEEE T-ITS 2020, arXiv:1811.05320), Table I; transcribed from memory "
    "of the paper, NOT checked against the paper text (no copy of it was reachable when this table "
    "was written)"
)
_PWC = "T-GCN paper Table I as listed by paperswithcode.com (MAE only); not checked against the paper text"


def _cells(*rows: tuple[float | None, ...]) -> dict[str, TGCNCell]:
    keys = ("rmse", "mae", "accuracy", "r2", "var")
    return {m: dict(zip(keys, r, strict=True)) for m, r in zip(("15", "30", "45", "60"), rows, strict=True)}


_N = None
TGCN_TABLE: dict[tuple[str, str], PublishedTGCN] = {
    ("los-loop", "ha"): PublishedTGCN(_cells(*[(7.4427, 4.0145, 0.8733, 0.7121, 0.7121)] * 4), _TGCN_TABLE_I, False),
    ("los-loop", "arima"): PublishedTGCN(_cells(
        (10.0439, 7.6832, 0.8275, 0.0025, _N), (9.3450, 7.6891, 0.8275, 0.0031, _N),
        (10.0508, 7.6924, 0.8273, _N, 0.0035), (_N, _N, _N, _N, _N)), _TGCN_TABLE_I, False),
    ("los-loop", "svr"): PublishedTGCN(_cells(
        (6.0084, 3.7285, 0.8977, 0.8123, 0.8146), (6.9588, 3.7248, 0.8815, 0.7492, 0.7523),
        (7.7504, 4.1288, 0.8680, 0.6899, 0.6947), (8.4388, 4.5036, 0.8562, 0.6336, _N)), _TGCN_TABLE_I, False),
    ("los-loop", "gcn"): PublishedTGCN(_cells(
        (7.7922, 5.3525, 0.8673, 0.6843, 0.6844), (8.3353, 5.6118, 0.8581, 0.6402, 0.6404),
        (8.8036, 5.9534, 0.8500, 0.5999, 0.6001), (9.2657, 6.2892, 0.8421, 0.5583, 0.5593)), _TGCN_TABLE_I, False),
    ("los-loop", "gru"): PublishedTGCN(_cells(
        (5.2182, 3.0602, 0.9109, 0.8576, 0.8577), (6.2802, 3.6505, 0.8931, 0.7957, 0.7958),
        (6.9850, 4.0915, 0.8801, 0.7446, 0.7451), (7.6837, 4.5186, 0.8690, 0.6912, 0.6914)), _TGCN_TABLE_I, False),
    ("los-loop", "tgcn"): PublishedTGCN(_cells(
        (5.1264, 3.1802, 0.9127, 0.8634, 0.8634), (6.0598, 3.7466, 0.8968, 0.8098, 0.8100),
        (6.7065, 4.1158, 0.8857, 0.7679, 0.7684), (7.2677, 4.6021, 0.8762, 0.7283, 0.7290)),
        _TGCN_TABLE_I + "; the 15-min row equals, to 4 decimals, the score of the authors' released "
        "out/tgcn_los_lr0.001_batch64_unit64_seq12_pre3_epoch5000/test_result.csv under this package's "
        "protocol (stgnn.protocols.score)", False),
    ("sz-taxi", "gru"): PublishedTGCN(_cells(
        (_N, 2.6814, _N, _N, _N), (_N, 2.7009, _N, _N, _N), (_N, 2.7207, _N, _N, _N), (_N, 2.7431, _N, _N, _N)),
        _PWC, False),
    ("sz-taxi", "tgcn"): PublishedTGCN(_cells(
        (_N, 2.7061, _N, _N, _N), (_N, 2.7452, _N, _N, _N), (_N, 2.7666, _N, _N, _N), (_N, 2.7889, _N, _N, _N)),
        _PWC, False),
}
"""T-GCN's Table I (T-GCN protocol: max-scaled, 80/20, unmasked, best epoch on the test set)."""


def tgcn_published_for(dataset: str, model: str) -> PublishedTGCN | None:
    """The T-GCN Table I numbers for ``model`` on ``dataset``, if any."""
    return TGCN_TABLE.get((dataset, model))
