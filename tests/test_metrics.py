import math

import pytest
import torch

from stgnn.metrics import MaskedMetrics, masked_mae_loss


def _t(values):
    # [B=1, H=len, N=1, F=1]
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


def test_hand_computed_values_and_null_masking():
    m = MaskedMetrics(horizons=(1, 2), null_value=0.0)
    pred = torch.tensor([[[[2.0], [4.0]], [[1.0], [9.0]]]])  # [1, 2, 2, 1]
    target = torch.tensor([[[[1.0], [0.0]], [[2.0], [6.0]]]])  # the 0 is missing
    m.update(pred, target)
    out = m.compute()
    assert out["1"]["mae"] == pytest.approx(1.0)  # only |2-1|
    assert out["2"]["mae"] == pytest.approx((1 + 3) / 2)
    assert out["2"]["rmse"] == pytest.approx(math.sqrt((1 + 9) / 2))
    assert out["2"]["mape"] == pytest.approx(100 * (0.5 + 0.5) / 2)
    assert out["average"]["mae"] == pytest.approx((1 + 1 + 3) / 3)
    assert out["average"]["count"] == 3


def test_accumulates_then_divides_not_mean_of_batches():
    m = MaskedMetrics(horizons=(1,))
    m.update(_t([3.0]), _t([1.0]))  # one error of 2
    m.update(torch.zeros(1, 1, 3, 1) + 1.0, torch.ones(1, 1, 3, 1))  # three errors of 0
    out = m.compute()["1"]
    assert out["mae"] == pytest.approx(0.5)  # 2 / 4, not mean(2, 0) = 1
    assert out["rmse"] == pytest.approx(math.sqrt(4 / 4))  # not mean of batch RMSEs (1.0 vs 1.0)
    m2 = MaskedMetrics(horizons=(1,))
    m2.update(_t([3.0]), _t([1.0]))
    m2.update(torch.full((1, 1, 3, 1), 2.0), torch.ones(1, 1, 3, 1))
    assert m2.compute()["1"]["rmse"] == pytest.approx(math.sqrt((4 + 3) / 4))


def test_explicit_mask_excludes_readings():
    m = MaskedMetrics(horizons=(1,), null_value=None)
    m.update(_t([5.0]), _t([1.0]), mask=torch.zeros(1, 1, 1, dtype=torch.bool))
    m.update(_t([2.0]), _t([1.0]), mask=torch.ones(1, 1, 1, dtype=torch.bool))
    assert m.compute()["1"]["mae"] == pytest.approx(1.0)


def test_all_missing_gives_no_nan_or_inf():
    m = MaskedMetrics(horizons=(1,), null_value=0.0)
    m.update(_t([5.0]), _t([0.0]))
    out = m.compute()
    for row in out.values():
        assert row["mae"] is None and row["rmse"] is None and row["mape"] is None
    m.update(_t([3.0]), _t([2.0]))
    assert m.compute()["1"]["mae"] == pytest.approx(1.0)
    loss = masked_mae_loss(_t([5.0]), _t([0.0]), null_value=0.0)
    assert torch.isfinite(loss) and loss.item() == 0.0


def test_masked_mae_loss_matches_manual():
    pred, target = _t([1.0, 2.0, 10.0]), _t([2.0, 0.0, 7.0])
    assert masked_mae_loss(pred, target, null_value=0.0).item() == pytest.approx((1 + 3) / 2)


def test_defaults_count_real_zeros_like_the_config_default():
    # the config's default null_value is "none" (only the dataset's mask marks missing readings);
    # the metrics and the loss must default to the same, so a real 0 reading counts
    from stgnn.training.config import DataConfig

    assert DataConfig().null_value is None
    pred, target = _t([1.0, 5.0, 10.0]), _t([2.0, 0.0, 7.0])
    assert masked_mae_loss(pred, target).item() == pytest.approx((1 + 5 + 3) / 3)
    m = MaskedMetrics(horizons=(2,))
    m.update(pred, target)
    assert m.compute()["average"]["count"] == 3
    mask = torch.tensor([[[True], [False], [True]]])  # [1, 3, 1]: the dataset's own record of the missing 0
    assert masked_mae_loss(pred, target, mask).item() == pytest.approx((1 + 3) / 2)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ"):
        MaskedMetrics().update(torch.zeros(1, 12, 2, 1), torch.zeros(1, 12, 3, 1))
