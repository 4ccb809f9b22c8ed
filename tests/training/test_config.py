"""The config schema: every key typed, range-checked and documented; TOML in and out."""

import math

import pytest

from stgnn.configs import available_configs, paper_config
from stgnn.models import MODELS
from stgnn.training.config import (
    ConfigError,
    CustomConfig,
    DataConfig,
    RunConfig,
    TrainConfig,
    load_config,
    to_toml,
)
from stgnn.training.trainer import OPTIMIZERS, TEACHER_FORCING


def test_toml_overrides_only_what_it_names(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('model = "lstm"\n[train]\nlr = 0.01\nlr_milestones = [20, 30]\n'
                    '[model_params]\nhidden_channels = 8\n')
    cfg = load_config(path)
    assert cfg.train.lr == 0.01 and cfg.train.lr_milestones == [20, 30]
    assert cfg.train.batch_size == 64  # default kept
    assert cfg.model_params == {"hidden_channels": 8}


def test_round_trip_through_toml(tmp_path):
    cfg = RunConfig(model="gwnet", dataset="los-loop", model_params={"adaptive_top_k": None, "dropout": 0.1})
    cfg.data.null_value = None
    cfg.train.epochs = 3
    path = tmp_path / "r.toml"
    path.write_text(to_toml(cfg))
    assert load_config(path).to_dict() == {**cfg.to_dict(), "model_params": {"dropout": 0.1}}


def test_custom_section_round_trips(tmp_path):
    (tmp_path / "r.csv").write_text("")
    cfg = RunConfig(model="lstm", dataset="custom",
                    custom=CustomConfig(series=str(tmp_path / "r.csv"), edges=str(tmp_path / "e.csv"), k_neighbors=3))
    path = tmp_path / "c.toml"
    path.write_text(to_toml(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize(("text", "match"), [
    ("[train]\nlearning_rate = 1\n", r"\[train\] learning_rate: unknown key; known: epochs, "),
    ("[train]\nlr = 'fast'\n", r"\[train\] lr: Input should be a valid number"),
    ("[data]\nsplit = 0.7\n", r"\[data\] split: Input should be a valid list"),
    ("bogus = 1\n", "bogus: unknown key"),
    ("[train\n", "invalid TOML"),
    # issue 7 item 9: wrong types and ranges were accepted (2.5 epochs ran three)
    ("[train]\nepochs = 2.5\n", r"\[train\] epochs: Input should be a valid integer \(got 2.5\)"),
    ("[train]\nepochs = -3\n", r"\[train\] epochs: Input should be greater than or equal to 1"),
    ("[train]\nbatch_size = 0\n", r"\[train\] batch_size: Input should be greater than or equal to 1"),
    ("[train]\namp = 1\n", r"\[train\] amp: Input should be a valid boolean"),
    ("[train]\nepochs = true\n", r"\[train\] epochs: Input should be a valid integer"),
    ("[train]\nlr = nan\n", r"\[train\] lr: Input should be a finite number"),
    ("[train]\nlr = 0\n", r"\[train\] lr: Input should be greater than 0"),
    ("[train]\noptimizer = 'sgd'\n", r"\[train\] optimizer: Input should be 'adam', 'adamw' or 'rmsprop'"),
    ("[train]\nlr_schedule = 'multistep'\n", "needs lr_milestones"),
    ("[train]\nlr_milestones = [30, 20]\n", "strictly increasing"),
    ("[train]\ndevice = 'foo'\n", r"\[train\] device: 'foo' is not a device name"),
    ("[train]\ndevice = 'meta'\n", r"\[train\] device: .*not supported"),
    ("[data]\nsplit = [0.8, 0.1, 0.2]\n", "summing to 1"),
    ("[data]\ncovariates = ['weather']\n", r"\[data\] covariates.0: Input should be 'time_of_day' or 'day_of_week'"),
    ("[data]\ntarget_features = []\n", r"\[data\] target_features: List should have at least 1 item"),
    ("[data]\nnull_value = 'zero'\n", r"\[data\] null_value: Input should be a valid number"),
    ('model = "informer"\n', "model: unknown model 'informer'; registered: dcrnn"),
    ('dataset = "metr_la"\n', "dataset: unknown dataset 'metr_la'"),
    ("[model_params]\nhidden_channels = 2.5\n", r"\[model_params\] hidden_channels: Input should be a valid integer"),
    ("[model_params]\nhiden_channels = 8\n", r"\[model_params\] hiden_channels: unknown key for model 'lstm'"),
    ("[model]\nhidden_channels = 8\n", r"model: Input should be a valid string"),
    # issue 7 item 8: a typo in [custom] was a TypeError traceback
    ("[custom]\nseries = 'r.csv'\nlocation = 's.csv'\n", r"\[custom\] location: unknown key"),
    ("[custom]\nseries = 'r.csv'\n", r"series needs exactly one of locations, distances, edges, adjacency"),
    ("dataset = 'custom'\n", "dataset 'custom' needs"),
    ("[custom]\nseries = 'r.csv'\nedges = 'e.csv'\nk_neighbors = 0\n", r"\[custom\] k_neighbors"),
])
def test_bad_config_names_file_and_key(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as err:
        load_config(path)
    assert all(line.startswith(str(path)) for line in str(err.value).splitlines())


def test_every_problem_reported_at_once(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train]\nepochs = 2.5\nbatch_size = 0\nfoo = 1\n[data]\nhorizon = -1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    lines = str(err.value).splitlines()
    assert len(lines) == 4
    for key in ("[train] epochs", "[train] batch_size", "[train] foo", "[data] horizon"):
        assert sum(key in line for line in lines) == 1, key


def test_assignment_is_validated():
    cfg = RunConfig()
    with pytest.raises(ValueError, match="epochs"):
        cfg.train.epochs = 0
    with pytest.raises(ValueError, match="device"):
        cfg.train.device = "foo"


def test_null_value_none_round_trips_through_a_checkpoint_dict():
    # issue 7 item 10: null_value = "none" was saved as None and then rejected on load
    cfg = RunConfig.from_dict({"data": {"null_value": "none"}})
    assert cfg.data.null_value is None
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert RunConfig.from_dict({"data": {"null_value": 0.0}}).data.null_value == 0.0


def test_default_null_value_keeps_real_zeros():
    # the dataset's own mask is the record of what is missing, not a magic 0
    assert DataConfig().null_value is None


def test_custom_section_declares_sentinels_and_resampling(tmp_path):
    # the sentinel warning and the off-grid error point at these keys: a command-line user needs them
    import pandas as pd
    import standins

    from stgnn.training.trainer import load_data

    series, locations = standins.write_custom(tmp_path, t=40, n=3)
    frame = pd.read_csv(series)
    frame.loc[[2, 3], "S0"] = -9999
    frame.loc[7, "timestamp"] = "2024-01-01 00:37:00"  # off the 5-minute grid
    frame.to_csv(series, index=False)
    cfg = tmp_path / "own.toml"
    cfg.write_text(f'dataset = "custom"\n[custom]\nseries = "{series}"\nlocations = "{locations}"\n'
                   "missing_values = [-9999]\nresample = true\n")
    run = load_config(cfg)
    assert run.custom.missing_values == [-9999.0] and run.custom.resample is True
    with pytest.warns(UserWarning, match="1 off-grid timestamps resampled"):
        ds = load_data(run)
    assert not ds.mask[2:4, 0].any() and ds.mask[:, 1:].all()
    assert RunConfig.from_dict(run.to_dict()) == run


def test_command_line_labels_replace_the_file_name():
    with pytest.raises(ConfigError, match=r"^--epochs: Input should be greater than or equal to 1"):
        RunConfig.from_dict({"train": {"epochs": -3}}, source="x.toml", labels={("train", "epochs"): "--epochs"})


def test_allowed_names_match_the_trainer():
    literal = TrainConfig.model_fields["optimizer"].annotation.__args__
    assert set(literal) == set(OPTIMIZERS)
    assert set(TrainConfig.model_fields["teacher_forcing"].annotation.__args__) == set(TEACHER_FORCING)


def test_every_key_is_documented():
    for section in (RunConfig, DataConfig, TrainConfig, CustomConfig):
        for name, info in section.model_fields.items():
            assert info.description, f"{section.__name__}.{name}"


@pytest.mark.parametrize(("model", "dataset"), available_configs())
def test_paper_configs_are_valid(model, dataset):
    cfg = paper_config(model, dataset)
    assert cfg is not None and cfg.model == model and cfg.dataset == dataset
    assert model in MODELS and math.isfinite(cfg.train.lr)


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        load_config(tmp_path / "nope.toml")
