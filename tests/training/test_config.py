import pytest

from stgnn.training.config import RunConfig, load_config, to_toml


def test_toml_overrides_only_what_it_names(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('model = "lstm"\n[train]\nlr = 0.01\nlr_milestones = [20, 30]\n'
                    '[model_params]\nhidden_channels = 8\n')
    cfg = load_config(path)
    assert cfg.train.lr == 0.01 and cfg.train.lr_milestones == [20, 30]
    assert cfg.train.batch_size == 64  # default kept
    assert cfg.model_params == {"hidden_channels": 8}


def test_round_trip_through_toml(tmp_path):
    cfg = RunConfig(model="ha", dataset="los-loop")
    cfg.data.null_value = None
    cfg.train.epochs = 3
    path = tmp_path / "r.toml"
    path.write_text(to_toml(cfg))
    assert load_config(path).to_dict() == cfg.to_dict()


@pytest.mark.parametrize(("text", "match"), [
    ("[train]\nlearning_rate = 1\n", "unknown key 'learning_rate'"),
    ("[train]\nlr = 'fast'\n", "'lr' must be a number"),
    ("[data]\nsplit = 0.7\n", "'split' must be a list"),
    ("bogus = 1\n", "unknown key 'bogus'"),
    ("[train\n", "invalid TOML"),
])
def test_bad_config_names_file_and_key(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        load_config(path)
    assert "bad.toml" in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        load_config(tmp_path / "nope.toml")

