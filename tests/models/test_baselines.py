import pytest
import torch

from stgnn.models import MODELS, ModelSpec, build_model
from stgnn.models.base import Batch
from stgnn.models.baselines import HistoricalAverage, LastValue


def test_registry_and_bad_hparams():
    assert {"ha", "last", "lstm"} <= set(MODELS)
    with pytest.raises(KeyError, match="registered models"):
        build_model("nope", ModelSpec(3, 2, 1))
    with pytest.raises(TypeError, match="lstm"):
        build_model("lstm", ModelSpec(3, 2, 1), hiden=3)


def test_historical_average_uses_week_slot_then_day_fallback():
    spec = ModelSpec(num_nodes=2, in_channels=1, out_channels=1, horizon=2, steps_per_day=4)
    ha = HistoricalAverage(spec)
    slot = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 4, 5])  # slots 6.. never seen
    series = torch.arange(10, dtype=torch.float32).view(10, 1, 1).repeat(1, 2, 1)
    mask = torch.ones(10, 2, dtype=torch.bool)
    mask[0, 1] = False  # a missing reading is ignored
    ha.fit_statistics(series, mask, slot)
    batch = Batch(x=torch.zeros(1, 1, 2, 1), y=torch.zeros(1, 2, 2, 1), y_scaled=torch.zeros(1, 2, 2, 1),
                  mask=torch.ones(1, 2, 2, dtype=torch.bool), start=torch.tensor([0]),
                  slot=torch.tensor([[0, 6]]))
    out = ha.forecast(batch, torch.empty(2, 0, dtype=torch.long))
    assert out[0, 0, 0, 0] == pytest.approx((0 + 4) / 2)
    assert out[0, 0, 1, 0] == pytest.approx(4.0)  # step 0 missing for node 1
    # slot 6 = day slot 2: steps 2 and 6 (slot 2) -> mean of 2 and 6.
    assert out[0, 1, 0, 0] == pytest.approx((2 + 6) / 2)


def test_last_value_skips_missing_inputs():
    spec = ModelSpec(num_nodes=2, in_channels=2, out_channels=1, input_len=3, horizon=2)
    x = torch.tensor([[[1.0, 5.0], [2.0, 6.0], [3.0, 7.0]]]).unsqueeze(-1).repeat(1, 1, 1, 2)
    x_mask = torch.tensor([[[True, True], [True, False], [False, False]]])
    out = LastValue(spec)(x, torch.empty(2, 0, dtype=torch.long), x_mask=x_mask)
    assert out.shape == (1, 2, 2, 1)
    assert out[0, :, 0, 0].tolist() == [2.0, 2.0] and out[0, :, 1, 0].tolist() == [5.0, 5.0]
