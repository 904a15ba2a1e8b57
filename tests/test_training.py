"""colorize/training.py: a short fit learns, reports per-epoch RGB metrics, checkpoints, resumes."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from colorize import data
from colorize.config import TrainConfig
from colorize.errors import ColorizeError
from colorize.training import (
    ELAPSED_KEY,
    EpochProgress,
    EpochTrainer,
    epoch_line,
    fit,
    learning_rate_at,
    time_left,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiles(tiny_photos, cache_dir):
    photoset = data.load_photoset(tiny_photos, 32, cache_dir)
    split = data.split_photos(len(photoset.names), seed=0)
    return photoset.tiles_of(split.train), photoset.tiles_of(split.val)


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.logs = []

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(dict(logs))


def test_short_fit_raises_validation_ssim(tiles):
    config = TrainConfig(image_size=32, depth=2, base_filters=8, batch_size=4, epochs=6,
                         patience=10, dropout=0.0)
    recorder = Recorder()
    _, history = fit(config, *tiles, callbacks=[recorder], verbose=0)
    assert len(history["val_ssim"]) == 6
    assert max(history["val_ssim"][1:]) > history["val_ssim"][0]
    # callbacks see the RGB metrics in the logs, the hook Tune and Train reporters use
    assert {"loss", "val_loss", "val_ssim", "val_psnr", "val_colourfulness"} <= set(recorder.logs[0])


def test_fit_is_reproducible_for_a_seed(tiles, tiny_config):
    _, first = fit(tiny_config, *tiles, verbose=0)
    _, second = fit(tiny_config, *tiles, verbose=0)
    assert np.allclose(first["loss"], second["loss"], rtol=1e-4)


def test_checkpoint_resumes_where_it_stopped(tiles, tiny_config, tmp_path):
    import dataclasses

    ckpt = tmp_path / "ckpt"
    fit(tiny_config, *tiles, checkpoint_dir=ckpt, verbose=0)  # epochs 1-2
    assert json.loads((ckpt / "state.json").read_text())["epoch"] == 2
    longer = dataclasses.replace(tiny_config, epochs=3)
    model, history = fit(longer, *tiles, checkpoint_dir=ckpt, verbose=0)  # only epoch 3 runs
    assert len(history["loss"]) == 3
    # Adam's state came back too: its step count continues instead of restarting at 0.
    steps = data.steps_per_epoch(len(tiles[0]), tiny_config.batch_size)
    assert int(model.optimizer.iterations) == 3 * steps
    assert json.loads((ckpt / "state.json").read_text())["epoch"] == 3


def test_a_rerun_after_the_time_budget_keeps_the_clock_and_trains_no_further(tiles, tiny_config, tmp_path):
    """A fit whose budget ended and which then failed (writing its results, say) is rerun:
    it returns its best epoch at once instead of training for a whole new budget; a fit
    stopped inside its budget goes on with the minutes it had left."""
    import dataclasses

    from colorize.checkpoint import BEST_WEIGHTS
    from colorize.model import build_unet
    from colorize.training import ELAPSED_KEY

    ckpt = tmp_path / "ckpt"
    fit(tiny_config, *tiles, checkpoint_dir=ckpt, verbose=0)  # epochs 1-2

    def clock_at(minutes):
        state = json.loads((ckpt / "state.json").read_text())
        state["history"][ELAPSED_KEY][-1] = minutes
        (ckpt / "state.json").write_text(json.dumps(state))

    budgeted = dataclasses.replace(tiny_config, epochs=5, max_minutes=30)
    clock_at(31.0)  # the budget ran out at epoch 2
    model, history = fit(budgeted, *tiles, checkpoint_dir=ckpt, verbose=0)
    assert len(history["loss"]) == 2
    best = build_unet(budgeted)
    best.load_weights(ckpt / BEST_WEIGHTS)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(np.asarray(model(x, training=False)), np.asarray(best(x, training=False)))

    clock_at(29.999)  # a moment left: the next epoch's clock goes on from there and ends the run
    _, history = fit(budgeted, *tiles, checkpoint_dir=ckpt, verbose=0)
    assert len(history["loss"]) == 3 and history[ELAPSED_KEY][-1] >= 30


def test_early_stopping_stops_on_ssim(tiles):
    config = TrainConfig(image_size=32, depth=2, base_filters=4, batch_size=4, epochs=30,
                         patience=1, learning_rate=0.5)  # a huge rate makes SSIM stall at once
    _, history = fit(config, *tiles, verbose=0)
    assert len(history["loss"]) < 30


def test_epoch_trainer_runs_one_epoch_at_a_time(tiles, tiny_config):
    trainer = EpochTrainer(tiny_config, *tiles)
    first, second = trainer.run_epoch(), trainer.run_epoch()
    assert trainer.epoch == 2
    assert {"loss", "val_ssim", "val_psnr"} <= set(first) and second["loss"] < first["loss"] * 5


def test_rebalanced_training_runs(tiles):
    config = TrainConfig(image_size=32, depth=2, base_filters=4, batch_size=4, epochs=1,
                         rebalance=0.5)
    _, history = fit(config, *tiles, verbose=0)
    assert np.isfinite(history["loss"][0])


def test_a_short_fit_on_the_rebuilt_photos_error_learns(tiles):
    config = TrainConfig(image_size=32, depth=2, base_filters=8, batch_size=4, epochs=4,
                         patience=10, dropout=0.0, loss="rgb", steps_per_epoch=20)
    _, history = fit(config, *tiles, verbose=0)
    assert len(history["val_loss"]) == 4 and min(history["val_loss"][1:]) < history["val_loss"][0]
    assert history["loss"][-1] < history["loss"][0]


@pytest.mark.parametrize("stride", [1, 4])
def test_short_fit_of_the_bins_head_gains_colour(tiles, stride):
    from colorize.calibration import GAIN_RANGE, TEMPERATURES
    from colorize.fit_run import calibrate

    config = TrainConfig(image_size=32, depth=2, base_filters=8, batch_size=4, epochs=5,
                         patience=10, dropout=0.0, head="bins", rebalance=0.5, monitor="psnr",
                         steps_per_epoch=30, output_stride=stride)
    model, history = fit(config, *tiles, verbose=0)
    assert max(history["val_colourfulness"][1:]) > history["val_colourfulness"][0]
    assert len(history["val_monitor"]) == 5 and history["val_monitor"] == history["val_psnr"]
    # validation decodes each epoch at its own least-error temperature, not config.temperature
    assert len(history["val_temperature"]) == 5 and set(history["val_temperature"]) <= set(TEMPERATURES)
    # calibration: the least-error temperature, then the regression head's two gains on its a/b
    least = calibrate(model, config, tiles[1])
    assert least["temperature"] in TEMPERATURES and {"cast_gain", "gain"} <= set(least)
    vivid = calibrate(model, dataclasses.replace(config, colour_budget_db=0.5), tiles[1])
    assert vivid["temperature"] == least["temperature"]
    grown = [vivid[k] - least[k] for k in ("cast_gain", "gain")]  # a budget only adds colour
    assert min(grown) >= 0 and (max(grown) > 0 or max(vivid["cast_gain"], vivid["gain"]) == GAIN_RANGE[1])


def test_calibrated_monitor_selects_on_what_each_epoch_would_ship(tiles):
    """monitor "calibrated": each epoch is scored after its own calibration on the validation
    crops, the one `colorize fit` then stores with the kept epoch."""
    from colorize.fit_run import calibrate
    from colorize.training import score_tiles

    config = TrainConfig(image_size=32, depth=2, base_filters=8, batch_size=4, epochs=3,
                         patience=10, dropout=0.0, head="bins", output_stride=4, monitor="calibrated",
                         colour_budget_db=0.1, steps_per_epoch=20)
    model, history = fit(config, *tiles, verbose=0)
    assert history["val_monitor"] == history["val_calibrated_psnr"]
    assert len(history["val_calibrated_colourfulness"]) == 3
    # the kept epoch (the last here, or the best) scores, with the stored calibration, what it logged
    best = int(np.argmax(history["val_monitor"]))
    shipped = score_tiles(model, tiles[1], config, calibrate(model, config, tiles[1]))
    assert shipped["psnr"] == pytest.approx(history["val_calibrated_psnr"][best], abs=1e-3)
    # a budget spent for colour: the calibrated crops are more colourful than the least-error ones
    assert history["val_calibrated_colourfulness"][best] > history["val_colourfulness"][best]


def test_monitor_scores():
    from colorize.training import monitor_score

    scores = {"ssim": 0.9, "psnr": 23.0, "colourfulness": 10.0}
    assert monitor_score(TrainConfig(), scores, 40.0) == 0.9
    assert monitor_score(TrainConfig(monitor="psnr"), scores, 40.0) == 23.0
    colour = TrainConfig(monitor="colour", colour_floor=0.5)
    assert monitor_score(colour, scores, 20.0) == 23.0  # 10 >= 0.5 x 20: colourful enough
    dull = monitor_score(colour, scores, 40.0)  # 10 < 0.5 x 40
    assert dull < monitor_score(colour, {**scores, "psnr": 15.0, "colourfulness": 30.0}, 40.0)
    calibrated = TrainConfig(monitor="calibrated")
    assert monitor_score(calibrated, {**scores, "calibrated_psnr": 23.4}, 40.0) == 23.4
    with pytest.raises(ColorizeError, match="leave calibrate on"):
        TrainConfig(monitor="calibrated", calibrate=False)


def test_time_budget_stops_after_the_epoch_that_reaches_it(tiles):
    config = TrainConfig(image_size=32, depth=2, base_filters=8, batch_size=4, epochs=5,
                         patience=10, max_minutes=1e-6)
    _, history = fit(config, *tiles, verbose=0)
    assert len(history["loss"]) == 1 and history["elapsed_minutes"][0] > 1e-6


def test_a_line_per_epoch_with_scores_speed_and_time_left(tiles, tiny_config, caplog):
    caplog.set_level("INFO", logger="colorize.training")
    train, val = tiles
    fit(tiny_config, train, val, callbacks=[EpochProgress(2, tiny_config.batch_size)], verbose=0)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(lines) == 2
    assert lines[0].startswith("epoch 1/2: loss ") and lines[0].endswith(" left at most")
    assert all(w in lines[1] for w in ("val SSIM 0.", "PSNR ", " dB, colourfulness ", " img/s, "))
    assert lines[1].endswith("0s left")


def test_time_left_counts_the_epochs_the_time_budget_leaves():
    assert time_left(120.0, 98) == 120.0 * 98  # no budget: every epoch left
    assert time_left(120.0, 98, max_minutes=55, elapsed_minutes=4.0) == 120.0 * 26  # ceil(51 min / 2)
    assert time_left(120.0, 3, max_minutes=55, elapsed_minutes=4.0) == 120.0 * 3  # the epochs end first
    assert time_left(120.0, 98, max_minutes=55, elapsed_minutes=56.0) == 0.0  # the budget is spent


def test_epoch_line_reads_the_logs_it_has():
    logs = {"loss": 0.02134, "val_ssim": 0.90123, "val_psnr": 22.314, "val_colourfulness": 14.25}
    assert epoch_line(3, 20, logs, 412.4, 130) == (
        "epoch 3/20: loss 0.0213, val SSIM 0.9012, PSNR 22.31 dB, colourfulness 14.2, "
        "412 img/s, 2m10s left at most")
    assert epoch_line(1, 1, {"loss": 0.5}, 10, 0) == "epoch 1/1: loss 0.5000, 10 img/s, 0s left"
    calibrated = logs | {"val_calibrated_psnr": 22.187, "val_calibrated_colourfulness": 21.04}
    assert "colourfulness 14.2, calibrated PSNR 22.19 dB, colourfulness 21.0, 412 img/s" in epoch_line(
        3, 20, calibrated, 412.4, 130)


def test_learning_rate_decays_per_epoch_and_a_resumed_fit_follows_the_schedule(tiles, tiny_config, tmp_path):
    import dataclasses

    decaying = dataclasses.replace(tiny_config, lr_decay=0.5, epochs=2)
    recorder = Recorder()
    fit(decaying, *tiles, callbacks=[recorder], checkpoint_dir=tmp_path / "ckpt", verbose=0)
    rates = [log["learning_rate"] for log in recorder.logs]
    assert np.allclose(rates, [decaying.learning_rate, decaying.learning_rate * 0.5])
    recorder = Recorder()  # epoch 3 after a resume: the schedule continues, not restarts
    model, _ = fit(dataclasses.replace(decaying, epochs=3), *tiles, callbacks=[recorder],
                   checkpoint_dir=tmp_path / "ckpt", verbose=0)
    assert np.isclose(recorder.logs[0]["learning_rate"], decaying.learning_rate * 0.25)
    trainer = EpochTrainer(decaying, *tiles)  # the lockstep trainer of tuning follows it too
    trainer.run_epoch()
    trainer.run_epoch()
    assert np.isclose(float(trainer.model.optimizer.learning_rate), decaying.learning_rate * 0.5)


class TenMinuteEpochs(keras.callbacks.Callback):
    """Logs each epoch's end at (epoch + 1) x 10 minutes, as Ray Train's rank 0 broadcast
    overwrites the clock: a budget's schedule must follow the logged clock."""

    def on_epoch_end(self, epoch, logs=None):
        logs[ELAPSED_KEY] = 10.0 * (epoch + 1)


def test_the_cosine_schedule_spends_the_time_budget_and_a_resumed_fit_goes_on_from_its_minutes(
        tiles, tiny_config, tmp_path):
    import dataclasses
    import math

    budgeted = dataclasses.replace(tiny_config, lr_schedule="cosine", max_minutes=40, epochs=10, patience=0)
    half_cosine = [budgeted.learning_rate * 0.5 * (1 + math.cos(math.pi * m / 40)) for m in (0, 10, 20, 30)]
    recorder = Recorder()
    fit(dataclasses.replace(budgeted, epochs=2), *tiles, callbacks=[TenMinuteEpochs(), recorder],
        checkpoint_dir=tmp_path / "ckpt", verbose=0)
    assert np.allclose([log["learning_rate"] for log in recorder.logs], half_cosine[:2])
    state_file = tmp_path / "ckpt" / "state.json"  # the checkpoint's clock is its own, not the broadcast's:
    state = json.loads(state_file.read_text())     # say it trained those 20 minutes
    state["history"][ELAPSED_KEY] = [10.0, 20.0]
    state_file.write_text(json.dumps(state))
    recorder = Recorder()  # the rerun starts at 20 of its 40 minutes; the budget ends it after epoch 4
    fit(budgeted, *tiles, callbacks=[TenMinuteEpochs(), recorder], checkpoint_dir=tmp_path / "ckpt", verbose=0)
    assert np.allclose([log["learning_rate"] for log in recorder.logs], half_cosine[2:])
    # Without a budget, or in a Tune trial's lockstep folds (no clock), it spans the epochs.
    assert learning_rate_at(dataclasses.replace(budgeted, max_minutes=0), 5, 30.0) == pytest.approx(
        budgeted.learning_rate / 2)
    trainer = EpochTrainer(dataclasses.replace(budgeted, epochs=4), *tiles)
    trainer.run_epoch()
    trainer.run_epoch()
    assert float(trainer.model.optimizer.learning_rate) == pytest.approx(half_cosine[1])  # epoch 1 of 4
    with pytest.raises(ColorizeError, match="lr_schedule must be one of exponential, cosine"):
        dataclasses.replace(budgeted, lr_schedule="linear")
    with pytest.raises(ColorizeError, match="lr_decay 0.95 is the exponential schedule's"):
        dataclasses.replace(budgeted, lr_decay=0.95)  # a decay the cosine would ignore


def test_weight_averaging_never_trains_on_the_average_and_keeps_what_it_validated(tiles, tiny_config, tmp_path):
    import dataclasses

    from colorize import compat
    from colorize.training import MONITOR_KEY, score_tiles

    averaged = dataclasses.replace(tiny_config, ema=0.9, epochs=3, patience=10)
    plain = dataclasses.replace(averaged, ema=0.0)
    averaged_model, with_average = fit(averaged, *tiles, verbose=0)
    _, without = fit(plain, *tiles, verbose=0)
    # Training steps see the raw weights (the same losses); validation sees the average.
    assert with_average["loss"] == pytest.approx(without["loss"], rel=1e-5)
    assert with_average["val_psnr"] != pytest.approx(without["val_psnr"], rel=1e-4)
    assert any(not np.allclose(weight.numpy(), average.numpy())
               for weight, average in compat.ema_pairs(averaged_model.optimizer))
    # A resume swaps the raw weights back in before training on.
    resumed = {}
    for config in (averaged, plain):
        fit(dataclasses.replace(config, epochs=2), *tiles, checkpoint_dir=tmp_path / str(config.ema), verbose=0)
        resumed[config.ema] = fit(config, *tiles, checkpoint_dir=tmp_path / str(config.ema), verbose=0)
    assert resumed[0.9][1]["loss"] == pytest.approx(resumed[0.0][1]["loss"], rel=1e-5)
    model, history = resumed[0.9]
    best = int(np.argmax(history[MONITOR_KEY]))  # what comes back is what was validated
    assert score_tiles(model, tiles[1], averaged)["psnr"] == pytest.approx(history["val_psnr"][best], abs=1e-3)
    # Tuning's lockstep epochs average the same way: validated on the average, each next
    # epoch trained from the raw weights. Checked on the weights themselves, since two
    # trainers' losses can part by a float rounding on a busy machine.
    trainer, first_batch = EpochTrainer(averaged, *tiles), WeightsAtFirstBatch()
    trainer.run_epoch()
    raw = [average.numpy() for _, average in compat.ema_pairs(trainer.model.optimizer)]
    validated = [weight.numpy() for weight, _ in compat.ema_pairs(trainer.model.optimizer)]
    assert any(not np.array_equal(r, v) for r, v in zip(raw, validated, strict=True))
    trainer.callbacks.append(first_batch)
    trainer.run_epoch()
    assert all(np.array_equal(r, w) for r, w in zip(raw, first_batch.weights, strict=True))


class WeightsAtFirstBatch(keras.callbacks.Callback):
    """The model's trainable weights as the first training step of an epoch sees them."""

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.weights = [w.numpy() for w in self.model.trainable_weights]


def test_the_weight_average_is_the_normalised_mean_of_the_steps_so_far(tiles, tiny_config):
    """After t steps the average is sum_i m**(t-i) w_i / sum_i m**(t-i) over the raw weights
    w_i each step left, with no share kept for the first step's weights (Keras's own would
    keep m**(t-1) of them: a third of the average after 10 steps at m = 0.9)."""
    import dataclasses

    config = dataclasses.replace(tiny_config, ema=0.9, steps_per_epoch=10, dropout=0.0)
    trainer, steps = EpochTrainer(config, *tiles), WeightsAfterEachStep()
    trainer.callbacks.append(steps)
    trainer.run_epoch()  # the average is swapped into the model at the epoch's end
    t = len(steps.weights)
    share = 0.9 ** np.arange(t - 1, -1, -1)
    share /= share.sum()
    averaged = [sum(s * w[j] for s, w in zip(share, steps.weights, strict=True))
                for j in range(len(steps.weights[0]))]
    keras_share_of_first = 0.9 ** (t - 1)
    assert t == 10 and share[0] < 0.25 * keras_share_of_first
    for expected, weight in zip(averaged, trainer.model.trainable_weights, strict=True):
        np.testing.assert_allclose(weight.numpy(), expected, rtol=1e-4, atol=1e-6)


class WeightsAfterEachStep(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append([w.numpy() for w in self.model.trainable_weights])


def test_gradient_clipping_and_averaging_reach_the_optimizer(tiny_config):
    import dataclasses

    from colorize.training import compile_model

    plain = compile_model(tiny_config).optimizer
    assert plain.global_clipnorm is None and not plain.use_ema
    tuned = compile_model(dataclasses.replace(tiny_config, clip_norm=0.5, ema=0.99)).optimizer
    assert tuned.global_clipnorm == 0.5 and tuned.use_ema and tuned.ema_momentum == 0.99
    for bad in ({"clip_norm": -1.0}, {"ema": 1.0}, {"ema": -0.1}):
        with pytest.raises(ColorizeError, match=next(iter(bad))):
            dataclasses.replace(tiny_config, **bad)
