"""Presets by name, and `auto`: the recipe for a real folder of photos, the seed's model for a
handful, as the training commands resolve them from their flags."""

import pytest
from conftest import write_photos

import colorize.cli
from colorize import presets
from colorize.cli.options import config_source
from colorize.config import TrainConfig
from colorize.errors import ColorizeError


def test_every_preset_is_a_valid_configuration():
    assert presets.load("seed") == TrainConfig()  # the seed's model is the dataclass's defaults
    photos = presets.load("photos")
    assert (photos.depth, photos.loss, photos.monitor, photos.max_minutes) == (4, "rgb", "psnr", 55)


def test_a_file_loads_and_a_missing_one_is_a_clear_error(tmp_path):
    (tmp_path / "c.json").write_text('{"depth": 2, "epochs": 3}')
    assert presets.load(tmp_path / "c.json").depth == 2
    with pytest.raises(ColorizeError, match="config file not found"):
        presets.load(tmp_path / "photoz")


def test_auto_chooses_by_the_number_of_photos():
    assert presets.choose(presets.PHOTOS_AT_LEAST - 1) == "seed"
    assert presets.choose(presets.PHOTOS_AT_LEAST) == "pretrained"
    assert presets.choose(1222) == "pretrained"


def _resolve(argv, data):
    args = colorize.cli.build_parser().parse_args(argv)
    said = []
    return config_source(args, data, say=said.append), said


def test_fit_without_config_trains_the_recipe_on_a_real_folder(tmp_path):
    folder = write_photos(tmp_path / "many", presets.PHOTOS_AT_LEAST, size=(8, 8))
    source, said = _resolve(["fit", "--data", str(folder), "--out", "o", "--seed", "2"], str(folder))
    assert source.kind == "preset" and source.path == "pretrained"
    assert source.config == TrainConfig.from_dict({**presets.PRETRAINED, "seed": 2})
    assert source.config.encoder == "efficientnet-lite0" and source.config.encoder_lr_scale == 0.1
    assert said == [presets.why("pretrained", presets.PHOTOS_AT_LEAST)]
    assert "'pretrained' recipe for 200 photos" in said[0] and "--config seed" in said[0]
    assert "--config photos" in said[0]
    assert "a 55-minute budget" in said[0]


def test_the_chosen_recipe_states_the_budget_the_flags_leave(tmp_path):
    folder = write_photos(tmp_path / "many", presets.PHOTOS_AT_LEAST, size=(8, 8))
    _, said = _resolve(["fit", "--data", str(folder), "--out", "o", "--max-minutes", "110"], str(folder))
    assert "a 110-minute budget ends the run" in said[0] and "55" not in said[0]
    _, said = _resolve(["fit", "--data", str(folder), "--out", "o", "--max-minutes", "0"], str(folder))
    assert "no time budget" in said[0]


def test_fit_without_config_trains_the_seeds_model_on_a_handful(tmp_path):
    source, said = _resolve(["fit", "--out", "o", "--epochs", "3"], "sample")
    assert source.path == "seed" and source.config == TrainConfig(epochs=3)
    assert "seed's small model for 6 photo(s)" in said[0]


def test_an_explicit_config_wins_and_says_nothing(tmp_path):
    folder = write_photos(tmp_path / "many", presets.PHOTOS_AT_LEAST, size=(8, 8))
    source, said = _resolve(["train", "--data", str(folder), "--config", "seed"], str(folder))
    assert (source.path, source.config, said) == ("seed", TrainConfig(), [])
    source, said = _resolve(["fit", "--out", "o", "--config", "photos", "--depth", "3"], "sample")
    assert source.config.depth == 3 and source.config.global_context and said == []
    (tmp_path / "mine.json").write_text('{"loss": "ssim"}')
    source, _ = _resolve(["fit", "--out", "o", "--config", str(tmp_path / "mine.json")], "sample")
    assert (source.kind, source.config.loss) == ("file", "ssim")


def test_help_shows_both_defaults_where_the_presets_differ():
    parser = colorize.cli.build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    help_text = " ".join(commands["fit"].format_help().split())
    assert "(default: 3; pretrained preset: 5)" in help_text  # --depth
    assert "(default: 16)" in help_text  # --batch-size: the same in both
