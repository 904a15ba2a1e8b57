"""colorize/calibration.py: the fitted gains and temperature recover known values."""

import dataclasses

import numpy as np

from colorize import ab_bins, calibration


def test_least_squares_gains_recover_a_known_gain_on_cast_and_deviation():
    rng = np.random.default_rng(0)
    cast = rng.normal(0, 0.1, (6, 1, 1, 2))
    deviation = rng.normal(0, 0.2, (6, 16, 16, 2))
    deviation -= deviation.mean(axis=(1, 2), keepdims=True)
    pred = cast + deviation
    truth = 1.3 * cast + 1.8 * deviation + rng.normal(0, 0.01, pred.shape)
    gains = calibration.least_squares_gains(pred, truth)
    assert abs(gains["cast_gain"] - 1.3) < 0.01 and abs(gains["gain"] - 1.8) < 0.01
    same = calibration.least_squares_gains(pred, 1.6 * pred)  # one gain on all of a/b
    assert abs(same["cast_gain"] - 1.6) < 1e-9 and abs(same["gain"] - 1.6) < 1e-9
    assert calibration.least_squares_gains(np.zeros_like(pred), truth) == {"cast_gain": 1.0, "gain": 1.0}


def test_gains_scale_each_images_cast_and_deviation_and_old_calibrations_keep_one_gain():
    rng = np.random.default_rng(4)
    ab = rng.normal(0.05, 0.2, (3, 8, 12, 2)).astype(np.float32)
    out = calibration.apply_gains(ab, {"cast_gain": 1.5, "gain": 2.0})
    assert out.dtype == ab.dtype
    cast, deviation = calibration.split_cast(ab)
    np.testing.assert_allclose(out.mean(axis=(1, 2), keepdims=True), 1.5 * cast, atol=1e-6)
    np.testing.assert_allclose(calibration.split_cast(out)[1], 2.0 * deviation, atol=1e-6)
    np.testing.assert_allclose(calibration.apply_gains(ab[0], {"cast_gain": 1.5, "gain": 2.0}), out[0],
                               atol=1e-6)  # a single (H, W, 2) image is one image, not a batch
    np.testing.assert_array_equal(calibration.apply_gains(ab, {"gain": 1.4}), ab * 1.4)
    assert calibration.apply_gains(ab, {}) is ab


def test_best_temperature_recovers_a_known_temperature():
    logits = np.random.default_rng(1).normal(0, 3, (4, 8, 8, ab_bins.bin_count())).astype(np.float32)
    truth = ab_bins.annealed_mean(logits, 0.5)
    assert calibration.best_temperature(logits, truth) == 0.5


def test_a_colour_budget_buys_colour_at_exactly_that_price():
    """The budget raises the deviation's gain alone, by exactly the dB asked for."""
    rng = np.random.default_rng(2)
    pred = rng.normal(0, 0.2, (4, 16, 16, 2))
    truth = 1.2 * pred + rng.normal(0, 0.1, pred.shape)

    def psnr(gains):
        return -10 * np.log10(np.mean((calibration.apply_gains(pred, gains) - truth) ** 2))

    best = calibration.least_squares_gains(pred, truth)
    vivid = calibration.least_squares_gains(pred, truth, budget_db=0.2)
    assert vivid["gain"] > best["gain"] and vivid["cast_gain"] == best["cast_gain"]
    assert abs(psnr(best) - psnr(vivid) - 0.2) < 1e-6  # the price asked, no more, no less


def test_a_colour_budget_goes_where_it_buys_the_most_colour_at_the_same_price():
    rng = np.random.default_rng(5)
    pred = rng.normal(0.1, 0.2, (4, 16, 16, 2))
    truth = 1.2 * pred + rng.normal(0, 0.1, pred.shape)

    def error(gains):
        return np.mean((calibration.apply_gains(pred, gains) - truth) ** 2)

    best = calibration.least_squares_gains(pred, truth)
    picks = [calibration.least_squares_gains(pred, truth, 0.2, colourfulness=score) for score in
             (lambda g: g["cast_gain"], lambda g: g["gain"], lambda g: g["cast_gain"] + g["gain"])]
    assert picks[0]["cast_gain"] > best["cast_gain"] and abs(picks[0]["gain"] - best["gain"]) < 1e-9
    assert picks[1]["gain"] > best["gain"] and abs(picks[1]["cast_gain"] - best["cast_gain"]) < 1e-9
    assert picks[2]["gain"] > best["gain"] and picks[2]["cast_gain"] > best["cast_gain"]
    for pick in picks:
        assert abs(error(pick) / error(best) - 10 ** 0.02) < 1e-9


def test_a_colour_target_spends_the_least_budget_that_reaches_it():
    rng = np.random.default_rng(6)
    pred = rng.normal(0.1, 0.2, (4, 16, 16, 2))
    truth = 1.2 * pred + rng.normal(0, 0.1, pred.shape)

    def colour(gains):  # a stand-in for colourfulness: the mean chroma the gains give
        return float(np.mean(np.abs(calibration.apply_gains(pred, gains))))

    def error(gains):
        return np.mean((calibration.apply_gains(pred, gains) - truth) ** 2)

    best = calibration.least_squares_gains(pred, truth)
    target = 1.2 * colour(best)
    gains = calibration.gains_for_target(pred, truth, target, colour)
    assert target <= colour(gains) < target * 1.002  # reached, with hardly a step to spare
    price = 10 * np.log10(error(gains) / error(best))
    assert colour(calibration.least_squares_gains(pred, truth, price * 0.99, colour)) < target
    assert calibration.gains_for_target(pred, truth, 0.5 * colour(best), colour) == best
    out_of_reach = calibration.gains_for_target(pred, truth, 100.0, colour)
    assert out_of_reach == calibration.least_squares_gains(pred, truth, calibration.MAX_BUDGET_DB, colour)


def test_a_model_calibrated_to_a_colour_target_reaches_it(tiny_photos, tiny_config):
    """Through calibrate(): a real Keras model whose colours are half the truth's (the tiny
    photos' colour is a function of their brightness, so a per-pixel linear map of L
    predicts it), and a target between its least-squares colour and the most it can give."""
    import keras

    from colorize import data, lab, metrics
    from colorize.fit_run import calibrate

    tiles = data.load_photoset(tiny_photos, tiny_config.image_size).tiles
    rgb, l_norm, true_ab = data.eval_arrays(tiles, tiny_config.image_size)
    design = np.c_[l_norm.reshape(-1, 1), np.ones(l_norm.size)]
    coef = np.linalg.lstsq(design, true_ab.reshape(-1, 2), rcond=None)[0]
    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.layers[-1].set_weights([0.5 * coef[:1], 0.5 * coef[1]])

    def colourfulness(gains):
        output = model.predict(l_norm, verbose=0)
        coloured = lab.to_uint8(lab.join_lab(l_norm, calibration.apply_gains(output, gains)))
        return np.mean([metrics.colourfulness(image) for image in coloured])

    truth = np.mean([metrics.colourfulness(image) for image in rgb])
    least = calibrate(model, tiny_config, tiles)
    assert 1.5 < least["gain"] < 2.5  # it sees the halved colours
    share = 1.1 * colourfulness(least) / truth  # within the 3 dB a target may spend
    gains = calibrate(model, dataclasses.replace(tiny_config, colour_target=share), tiles)
    assert share * truth <= colourfulness(gains) < 1.02 * share * truth


def test_a_colour_target_is_measured_on_the_whole_validation_photos(tmp_path, tiny_config):
    """`colorize fit` hands calibrate() its validation photos: a colour target is then a
    share of their colourfulness as inference colours them, whole at the working scale,
    not of the square crops the gains are fitted on. Here the crops are cut from a paler
    copy of the photos, so the two readings of one target land far apart."""
    import cv2
    import keras

    from colorize import data, lab, metrics
    from colorize.artifact import Artifact
    from colorize.fit_run import calibrate
    from colorize.inference import MAX_ASPECT, prepare, working_ab
    from colorize.preprocess import resize_short_side, working_side
    from tests.conftest import write_photos

    vivid = data.photos_from(write_photos(tmp_path / "vivid", 12, size=(40, 72)))
    (tmp_path / "pale").mkdir()
    for photo in vivid:
        l_norm, ab = lab.split_lab(photo.load())
        pale = lab.to_uint8(lab.join_lab(l_norm, 0.4 * ab))
        cv2.imwrite(str(tmp_path / "pale" / f"{photo.name}.png"), cv2.cvtColor(pale, cv2.COLOR_RGB2BGR))
    size = tiny_config.image_size
    tiles = data.load_photoset(tmp_path / "pale", size).tiles
    vivid_rgb, l_norm, true_ab = data.eval_arrays(data.load_photoset(tmp_path / "vivid", size).tiles, size)
    design = np.c_[l_norm.reshape(-1, 1), np.ones(l_norm.size)]
    coef = np.linalg.lstsq(design, true_ab.reshape(-1, 2), rcond=None)[0]
    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.layers[-1].set_weights([0.5 * coef[:1], 0.5 * coef[1]])  # half the vivid colours
    side = working_side(size)
    truth = np.mean([metrics.colourfulness(resize_short_side(p.load(), side, max_long=MAX_ASPECT * side))
                     for p in vivid])

    def whole_share(gains):  # the photos' colour as inference gives it, against their truth
        artifact = Artifact(model, tiny_config, {"calibration": gains})
        smalls = [prepare(artifact, p.load())["small"] for p in vivid]
        coloured = [lab.to_uint8(lab.join_lab(small[..., None], ab))
                    for small, ab in zip(smalls, working_ab(artifact, smalls), strict=True)]
        return np.mean([metrics.colourfulness(image) for image in coloured]) / truth

    least = calibrate(model, tiny_config, tiles)  # least squares against the pale crops
    share = 1.1 * whole_share(least)  # within the 3 dB a target may spend
    config = dataclasses.replace(tiny_config, colour_target=share)
    whole = calibrate(model, config, tiles, vivid)
    assert share <= whole_share(whole) < 1.02 * share
    on_crops = calibrate(model, config, tiles)  # the pale crops reach that share at least squares
    assert on_crops == least and whole_share(on_crops) < share / 1.05


def test_fit_measures_its_colour_target_on_its_whole_validation_photos(tmp_path, tiny_photos, tiny_config,
                                                                       cache_dir, caplog):
    import logging

    from colorize.fit_run import run_fit
    from colorize.prepared_data import prepare_data

    config = dataclasses.replace(tiny_config, epochs=1, colour_target=0.5)
    val_photos = prepare_data(tiny_photos, config, cache_dir).photos("val")
    with caplog.at_level(logging.INFO, logger="colorize.fit_run"):
        metrics = run_fit(config, tiny_photos, tmp_path / "fit", cache_dir, verbose=0)
    assert f"colour target on {len(val_photos)} whole photos" in caplog.text and len(val_photos) >= 2
    assert {"cast_gain", "gain"} <= set(metrics["calibration"])
