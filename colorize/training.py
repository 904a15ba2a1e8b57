"""Training. `colorize fit` and a Ray Train worker call `fit`; a Tune trial drives k folds'
`EpochTrainer`s in lockstep instead (same model, loss, data pipeline and validation scores;
the trial owns the epoch loop, so that each epoch reports the folds' mean).

fit(config, train_tiles, val_tiles, callbacks) trains the U-Net with Adam and early
stopping on a validation score of the reconstructed RGB image (SSIM by default, the seed's
rule; see `monitor_score` for the others) and returns the model and its per-epoch history.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from colorize import ab_bins, compat, data, efficientnet_lite, lab, losses, metrics, precision
from colorize.artifact import Artifact
from colorize.calibration import (
    apply_gains,
    best_temperature,
    gains_for_target,
    least_squares_gains,
)
from colorize.checkpoint import (
    load_best,
    load_checkpoint,
    save_best,
    save_checkpoint,
)
from colorize.config import TrainConfig
from colorize.decoding import decode_ab, decoder_at_temperature
from colorize.errors import ColorizeError
from colorize.inference import predict_ab, prepare, to_working_scale, working_ab
from colorize.model import build_unet

log = logging.getLogger(__name__)

MONITOR_KEY = "val_monitor"  # the logged score early stopping and the best checkpoint follow
ELAPSED_KEY = "elapsed_minutes"  # since this fit started: what the time budget reads
UNCOLOURFUL_PENALTY = 100.0  # dB: any epoch above the colour floor outranks every one below


def compile_model(config: TrainConfig, train_tiles: np.ndarray | None = None) -> keras.Model:
    """A fresh U-Net compiled with Adam and its loss (rebalanced from `train_tiles`)."""
    keras.utils.set_random_seed(config.seed)
    policy = precision.training_policy(config.precision, fine_tunes_encoder=config.fine_tunes_encoder)
    model = build_unet(dataclasses.replace(config, precision=policy))
    if config.encoder != "none":
        efficientnet_lite.load_pretrained(model, variant=config.encoder)  # before a checkpoint's weights, which win
        if not config.fine_tunes_encoder:  # frozen
            for layer in model.layers:
                layer.trainable = layer.trainable and not efficientnet_lite.is_encoder_layer(layer.name)
    weights = None
    if config.rebalance > 0 or (config.head == "bins" and train_tiles is not None):
        if train_tiles is None:
            raise ValueError("rebalancing needs the training tiles to count colours")
        _, ab = lab.split_lab(data.center_crop(train_tiles, config.image_size))
        if config.head == "bins":
            prior = ab_bins.bin_prior(ab)
            # Start from the training colours' prior instead of a uniform guess over ~260
            # bins (whose mean is a constant tint): cross-entropy then learns far sooner.
            model.get_layer("ab_logits").bias.assign(np.log(prior + 1e-6).astype(np.float32))
            if config.rebalance > 0:
                weights = ab_bins.class_weights(prior, config.rebalance)
        else:
            weights = losses.rebalance_weights(ab, config.rebalance)
    clipping = {"global_clipnorm": config.clip_norm} if config.clip_norm else {}
    if config.ema or config.fine_tunes_encoder and config.encoder_lr_scale < 1:
        optimizer = AveragedAdam(config.learning_rate, use_ema=bool(config.ema), ema_momentum=config.ema or 0.99,
                                 encoder_lr_scale=config.encoder_lr_scale, **clipping)
    else:
        optimizer = keras.optimizers.Adam(config.learning_rate, **clipping)
    if config.precision == "mixed_float16":  # float16 gradients underflow without loss scaling
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(
        optimizer=optimizer,
        loss=losses.make_loss(config, weights),
    )
    return model


class AveragedAdam(keras.optimizers.Adam):
    """Adam that also keeps a moving average of the weights (`TrainConfig.ema`), and steps
    the pretrained encoder's weights at `encoder_lr_scale` of the rate (a pretrained network
    fine-tuned at the rate a fresh decoder needs forgets what it was pretrained for).
    Keras would copy the average into the model when fit ends; `EMAWeights` already leaves
    it there at every epoch's end, and a best epoch restored after that must not be
    overwritten."""

    def __init__(self, *args, encoder_lr_scale: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.encoder_lr_scale = encoder_lr_scale
        self._scales: list[float] = []

    def build(self, variables):
        super().build(variables)
        self._scales = [self.encoder_lr_scale if efficientnet_lite.is_encoder_layer(v.path) else 1.0
                        for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        scale = self._scales[self._get_variable_index(variable)] if self._scales else 1.0
        if scale != 1.0:
            learning_rate = keras.ops.cast(learning_rate, "float32") * scale
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "encoder_lr_scale": self.encoder_lr_scale}

    def finalize_variable_values(self, var_list):
        pass

    def _update_model_variables_moving_average(self, trainable_variables):
        """The average without its start-up bias. Keras's starts from the first step's
        weights and keeps momentum**t of them after t steps: at 0.998, two thirds of the
        average after 200 steps is the barely trained first step, so a short run (a Tune
        trial's first epochs, a small folder) validates and keeps a near-untrained model.
        With momentum m (1 - m**(t-1)) / (1 - m**t) at step t the average is the
        exponentially weighted mean of the steps so far, normalised (as Adam corrects its
        moments); past a few times 1 / (1 - m) steps it is Keras's average."""
        if not self.use_ema:
            return
        m = self.ema_momentum
        t = keras.ops.cast(self.iterations + 1, "float32")  # this update's number, from 1
        momentum = m * (1.0 - keras.ops.power(m, t - 1.0)) / (1.0 - keras.ops.power(m, t))
        for var, average in zip(trainable_variables, self._model_variables_moving_average, strict=True):
            if average is not None:
                k = keras.ops.cast(momentum, var.dtype)
                average.assign(k * average + (1.0 - k) * var)


class EMAWeights(keras.callbacks.Callback):
    """With `TrainConfig.ema`: the weights' moving average is swapped into the model at each
    epoch's end, so validation, model selection and checkpoints see it, and swapped back out
    for the next epoch's training. Averaging the last few hundred steps smooths the epoch-
    to-epoch swings that a small validation set picks among (docs/experiments.md, *Colour*). It
    must come before every callback that reads the weights."""

    def __init__(self, resumed: bool = False):
        super().__init__()
        self.swapped = resumed  # a checkpoint is written at an epoch's end, average in the model

    def _swap(self) -> None:
        # Through a host copy: Keras's own swap adds and subtracts, which rounds.
        for weight, average in compat.ema_pairs(self.model.optimizer):
            held = keras.ops.convert_to_numpy(weight)
            weight.assign(average)
            average.assign(held)
        self.swapped = not self.swapped

    def on_epoch_begin(self, epoch, logs=None):
        if self.swapped:
            self._swap()

    def on_epoch_end(self, epoch, logs=None):
        if not self.swapped:
            self._swap()


def learning_rate_at(config: TrainConfig, epoch: int, minutes: float | None = None) -> float:
    """The epoch's learning rate. `exponential`: a function of the epoch alone, so a resumed
    run (or a fold trained in lockstep) follows the same schedule as an uninterrupted one.
    `cosine`: of the share of the time budget spent by the epoch's start (`minutes` trained
    before it, resumes included), so the rate reaches 0 as the budget ends on any machine,
    however many epochs that is; without a budget or a clock, of the share of `epochs`."""
    if config.lr_schedule == "cosine":
        timed = bool(config.max_minutes) and minutes is not None
        done = minutes / config.max_minutes if timed and minutes is not None else epoch / config.epochs
        return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0)))
    return config.learning_rate * config.lr_decay**epoch


class LearningRateSchedule(keras.callbacks.Callback):
    """Sets each epoch's rate (`learning_rate_at`) and logs it. The minutes before an epoch
    are the logged ELAPSED_KEY of the epoch before it, read at the next epoch's start, when
    every callback has written that epoch's logs: on Ray Train that is rank 0's broadcast
    value, so all workers set the same rate. Without a logged clock (the lockstep folds of
    a Tune trial), `minutes` stays None and the schedule counts epochs."""

    def __init__(self, config: TrainConfig, minutes_before: float | None = None):
        super().__init__()
        self.config, self.minutes_before = config, minutes_before
        self.last_logs: dict = {}

    def on_epoch_begin(self, epoch, logs=None):
        minutes = self.last_logs.get(ELAPSED_KEY, self.minutes_before)
        self.model.optimizer.learning_rate = learning_rate_at(self.config, epoch, minutes)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            self.last_logs = logs  # the same dict the later callbacks fill in


def score_tiles(
    model: keras.Model, tiles: np.ndarray, config: TrainConfig, calibration: dict | None = None
) -> dict[str, float]:
    """PSNR / SSIM / colourfulness of the model on the centre crops of `tiles` (RGB, uint8)."""
    return ValidationSet(tiles, config).score(model, calibration)


class ValidationSet:
    """The centre crops of the validation tiles, converted once: their RGB truth, the
    model's input and its a/b target. One forward pass per epoch gives both the loss and
    the RGB scores (Keras's own validation pass would be a second one)."""

    def __init__(self, tiles: np.ndarray, config: TrainConfig):
        self.config = config
        self.rgb, self.l_norm, ab = data.eval_arrays(tiles, config.image_size)
        self.target = losses.join_target(ab, self.l_norm)  # converted once

    @functools.cached_property
    def truth_colourfulness(self) -> float:
        """Mean colourfulness of the crops themselves: what the "colour" monitor's floor is
        a share of (computed when first asked: `score_tiles` never asks)."""
        return metrics.mean_colourfulness(self.rgb) if len(self.rgb) else 0.0

    def score(self, model: keras.Model, calibration: dict | None = None, loss=None) -> dict[str, float]:
        """psnr, ssim and colourfulness of the reconstructed RGB; with `loss` (the model's
        loss function), "loss" too: its mean over the crops. Without `calibration` the bins
        head is decoded at these crops' least-error temperature ("temperature" in the
        result): at a fixed one, a rebalanced head's epochs grow more vivid than that
        temperature suits, and model selection kept its first epoch (docs/experiments.md)."""
        raw = predict_ab(model, self.l_norm)
        extra: dict[str, float] = {}
        if calibration is None and self.config.monitor == "calibrated" and len(raw):
            # What the epoch would ship as: its own calibration fitted on these crops.
            calibrated = metrics.score(list(self.rgb), list(self.reconstruct(raw, self.calibrate(raw))))
            extra |= {f"calibrated_{k}": v for k, v in calibrated.items()}
        if calibration is None and self.config.head == "bins" and len(raw):
            extra["temperature"] = best_temperature(raw, self.target[..., :2],
                                                    decode=decoder_at_temperature(self.config))
            calibration = extra
        scores = metrics.score(list(self.rgb), list(self.reconstruct(raw, calibration))) | extra
        if loss is not None and len(raw):
            scores["loss"] = float(np.mean(np.asarray(loss(self.target, raw))))
        return scores

    def reconstruct(self, raw: np.ndarray, calibration: dict | None) -> np.ndarray:
        """The crops' RGB (uint8) from the model's output, decoded with `calibration`."""
        return lab.to_uint8(lab.join_lab(self.l_norm, decode_ab(raw, self.config, calibration)))

    def calibrate(self, raw: np.ndarray, whole: WholeValidation | None = None) -> dict:
        """The colour calibration (calibration.py) of the model output `raw` on these crops:
        {"cast_gain": k, "gain": g} for the regression head; for bins the least-error
        temperature and then the same two gains on its decoded a/b; {} when disabled.
        With `whole`, a colour target is a share of those photos' colourfulness, measured
        on them as inference colours them, rather than of these crops'."""
        if not self.config.calibrate or not len(raw):
            return {}
        true_ab = self.target[..., :2]
        result = {}
        if self.config.head == "bins":
            # The temperature only picks the distribution's best point estimate: lowering it
            # does not colour an unsure plain head (its mode is as grey as its mean), a gain does.
            decode = decoder_at_temperature(self.config)
            result["temperature"] = best_temperature(raw, true_ab, decode=decode)
            raw = decode(raw, result["temperature"])
        scores: dict[tuple, float] = {}  # a target's bisection asks for some gains twice

        def colourfulness(gains: dict) -> float:
            key = (gains["cast_gain"], gains["gain"])
            if key not in scores:
                scores[key] = metrics.mean_colourfulness(
                    lab.to_uint8(lab.join_lab(self.l_norm, apply_gains(raw, gains))))
            return scores[key]

        if self.config.colour_target:
            if whole is None:
                target = self.config.colour_target * self.truth_colourfulness
                return result | gains_for_target(raw, true_ab, target, colourfulness)
            target = self.config.colour_target * whole.truth_colourfulness
            return result | gains_for_target(raw, true_ab, target, lambda gains: whole.colourfulness(result | gains))
        return result | least_squares_gains(raw, true_ab, self.config.colour_budget_db, colourfulness)


class WholeValidation:
    """The validation photos whole, at the working scale, coloured as inference colours
    them (`inference.working_ab`): what a colour target is measured on after training.
    The model colours a square crop apart from its photo (its borders, its whole-image
    context) differently from the photo whole, so the share of the truth's colour that
    the crops reach misjudges the photos', by a different amount on each split: one
    target on crops gave each seed a different colour on test, while the whole validation
    photos' share carries over to test alike on every seed (docs/experiments.md, "a
    colour target measured on whole photos")."""

    def __init__(self, model: keras.Model, config: TrainConfig, photos: Sequence[data.Photo]):
        self.artifact = Artifact(model, config)
        self.l_small, truths = [], []
        for photo in photos:  # one photo in memory at a time: a user's may be large
            rgb = photo.load()
            self.l_small.append(prepare(self.artifact, rgb)["small"])
            truths.append(metrics.colourfulness(to_working_scale(rgb, config.image_size)))
        self.truth_colourfulness = float(np.mean(truths)) if truths else float("nan")
        # The a/b before gains, decoded at one temperature: a calibration's search moves the
        # gains at a fixed temperature, so the forward passes run once per temperature.
        self._temperature: float | None = None
        self._ab: list[np.ndarray] | None = None

    def colourfulness(self, calibration: dict) -> float:
        """Mean colourfulness of the photos coloured with `calibration` (its temperature, then gains)."""
        temperature = calibration.get("temperature")
        if self._ab is None or temperature != self._temperature:
            decoding = Artifact(self.artifact.model, self.artifact.config,
                                {"calibration": {"temperature": temperature}} if temperature else {})
            self._temperature, self._ab = temperature, working_ab(decoding, self.l_small)
        return metrics.mean_colourfulness(
            lab.to_uint8(lab.join_lab(l_small[..., None], apply_gains(ab, calibration)))
            for l_small, ab in zip(self.l_small, self._ab, strict=True))


def monitor_score(config: TrainConfig, scores: dict[str, float], truth_colourfulness: float) -> float:
    """The number model selection maximises: validation SSIM ("ssim", the seed's rule), PSNR
    ("psnr"), PSNR after the epoch's own colour calibration ("calibrated": the colours it
    would ship with, so a more colourful epoch is not ranked by its raw error against a
    greyer one that the gains will colour anyway), or PSNR among the epochs whose
    colourfulness reaches `colour_floor` x the truth's ("colour"; below the floor an epoch
    ranks under every epoch above it)."""
    if config.monitor == "ssim":
        return scores["ssim"]
    if config.monitor == "calibrated":
        return scores.get("calibrated_psnr", scores["psnr"])
    if config.monitor == "psnr" or scores["colourfulness"] >= config.colour_floor * truth_colourfulness:
        return scores["psnr"]
    return scores["psnr"] - UNCOLOURFUL_PENALTY


class RGBMetrics(keras.callbacks.Callback):
    """Adds val_loss, val_ssim, val_psnr, val_colourfulness and val_monitor to each epoch's
    logs, before other callbacks."""

    def __init__(self, val_tiles: np.ndarray, config: TrainConfig, minutes_before: float = 0.0):
        super().__init__()
        self.validation, self.config = ValidationSet(val_tiles, config), config
        self.minutes_before = minutes_before  # a resumed fit's clock goes on from its checkpoint
        self.started = time.monotonic()

    def on_train_begin(self, logs=None):
        self.started = time.monotonic() - 60.0 * self.minutes_before

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            scores = self.validation.score(self.model, loss=self.model.loss)
            logs.update({f"val_{k}": v for k, v in scores.items()})
            logs[MONITOR_KEY] = monitor_score(self.config, scores, self.validation.truth_colourfulness)
            logs[ELAPSED_KEY] = (time.monotonic() - self.started) / 60.0


class TimeBudget(keras.callbacks.Callback):
    """Stops training after the epoch whose logged elapsed time reaches `max_minutes`. It reads
    the logs (not its own clock) so that Ray Train workers, which see rank 0's broadcast
    value, all stop at the same epoch."""

    def __init__(self, max_minutes: float):
        super().__init__()
        self.max_minutes = max_minutes

    def on_epoch_end(self, epoch, logs=None):
        if self.max_minutes and (logs or {}).get(ELAPSED_KEY, 0.0) >= self.max_minutes:
            log.info("time budget of %g minutes reached after epoch %d: stopping", self.max_minutes, epoch + 1)
            self.model.stop_training = True


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Early stopping on val_monitor whose patience counts the epochs before a resume too."""

    def __init__(self, previous_scores: list[float], patience: int):
        super().__init__(monitor=MONITOR_KEY, mode="max", patience=patience, restore_best_weights=True)
        self.previous = list(previous_scores)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.previous:
            best_epoch = int(np.argmax(self.previous))
            compat.resume_early_stopping(self, self.previous[best_epoch], best_epoch,
                                         wait=len(self.previous) - 1 - best_epoch)


class EpochProgress(keras.callbacks.Callback):
    """One log line per epoch (see `epoch_line`): what a user watches during `colorize fit`."""

    def __init__(self, epochs: int, batch_size: int, max_minutes: float = 0.0):
        super().__init__()
        self.epochs, self.batch_size, self.max_minutes = epochs, batch_size, max_minutes
        self.began = self.last_step = 0.0
        self.steps = 0
        self.durations: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.began = self.last_step = time.perf_counter()
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        self.last_step = time.perf_counter()  # the epoch's training ends at its last step

    def on_epoch_end(self, epoch, logs=None):
        self.durations.append(time.perf_counter() - self.began)  # validation included
        rate = self.steps * self.batch_size / max(self.last_step - self.began, 1e-9)
        pace = self.durations[1:][-5:] or self.durations  # the first epoch also traces the graph
        left = time_left(float(np.mean(pace)), self.epochs - epoch - 1, self.max_minutes,
                         (logs or {}).get(ELAPSED_KEY, 0.0))
        log.info("%s", epoch_line(epoch + 1, self.epochs, logs or {}, rate, left))


def time_left(pace: float, epochs_left: int, max_minutes: float = 0.0, elapsed_minutes: float = 0.0) -> float:
    """Seconds left at `pace` seconds an epoch: the epochs left, or fewer where the time
    budget ends the run first (after the epoch that reaches it: TimeBudget)."""
    if max_minutes and pace > 0:
        budget_epochs = math.ceil(max(0.0, max_minutes - elapsed_minutes) * 60 / pace)
        epochs_left = min(epochs_left, budget_epochs)
    return pace * epochs_left


def epoch_line(epoch: int, epochs: int, logs: dict, images_per_second: float,
               seconds_left: float) -> str:
    """'epoch 3/20: loss 0.0213, val SSIM 0.9012, PSNR 22.31 dB, colourfulness 14.2,
    412 img/s, 2m10s left' (fit, and the Ray Train driver from its workers' reports)."""
    from colorize.console import eta

    parts = [f"epoch {epoch}/{epochs}:"]
    for key, label, digits in (("loss", "loss", 4), ("val_ssim", "val SSIM", 4),
                               ("val_psnr", "PSNR", 2), ("val_colourfulness", "colourfulness", 1),
                               ("val_temperature", "T", 2),
                               # monitor "calibrated": what the epoch would ship as, which it is ranked on
                               ("val_calibrated_psnr", "calibrated PSNR", 2),
                               ("val_calibrated_colourfulness", "colourfulness", 1)):
        if key in logs:
            unit = " dB" if key.endswith("psnr") else ""
            parts.append(f"{label} {float(logs[key]):.{digits}f}{unit},")
    parts.append(f"{images_per_second:.0f} img/s,")
    parts.append(f"{eta(seconds_left)} left" + (" at most" if epoch < epochs else ""))
    return " ".join(parts)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves weights, epoch, history (and the best weights) each epoch so a fit resumes."""

    def __init__(self, directory: str | Path, history: dict[str, list]):
        super().__init__()
        self.directory, self.history = Path(directory), history

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        save_checkpoint(self.directory, self.model, epoch + 1, self.history)
        scores = self.history.get(MONITOR_KEY, [])
        if scores and scores[-1] >= max(scores):
            save_best(self.directory, self.model)


def start_from(model: keras.Model, init: str | Path) -> None:
    """Copy a trained model's weights into `model` (same architecture), for fine-tuning."""
    from colorize.artifact import load_artifact

    saved = load_artifact(init, precision="float32").model
    try:
        model.set_weights(saved.get_weights())
    except ValueError:
        raise ColorizeError(
            f"--init {init}: that model's network differs from this configuration's; leave out "
            "--config and the flags that change the network (depth, base filters, encoder, head) "
            "to fine-tune it as it is") from None
    log.info("starting from the weights of %s", init)


def fit(
    config: TrainConfig,
    train_tiles: np.ndarray,
    val_tiles: np.ndarray,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    checkpoint_dir: str | Path | None = None,
    log_dir: str | Path | None = None,
    verbose: int = 1,
    strategy=None,
    train_dataset=None,
    init: str | Path | None = None,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Train on `train_tiles`, stop early on the validation score `config.monitor` names
    (`monitor_score`, on `val_tiles`' rebuilt RGB), restore the best epoch's weights.

    `callbacks` run after the metrics are in the logs (Tune and Train reporters hook in
    here). With `checkpoint_dir`, each epoch is saved there and a rerun resumes from it.
    `strategy` (a tf.distribute strategy) builds the model in its scope; `train_dataset`
    replaces the default tf.data pipeline (Ray Train passes a per-worker shard). `init` (a
    model folder or a shipped model's name) starts from that model's weights: fine-tuning;
    a checkpoint to resume from wins over it.
    """
    history: dict[str, list[float]] = {}
    initial_epoch = 0
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = compile_model(config, train_tiles)
        if init is not None:
            start_from(model, init)
        if checkpoint_dir is not None:
            initial_epoch, history = load_checkpoint(checkpoint_dir, model)
    if initial_epoch:
        log.info("resuming from %s at epoch %d", checkpoint_dir, initial_epoch)
    if initial_epoch >= config.epochs or _stopped_early(history, config) or _budget_spent(history, config):
        # Nothing left to train (say the run ended and then failed writing its results):
        # the kept epoch is the best one, as at the end of training.
        log.info("%s already finished its training (epoch %d): keeping its best epoch", checkpoint_dir, initial_epoch)
        return load_best(checkpoint_dir, model), history

    train_ds = train_dataset or data.make_dataset(
        train_tiles, config.image_size, config.batch_size, config.seed, training=True, zoom=config.zoom
    )
    early_stopping = ResumableEarlyStopping(history.get(MONITOR_KEY, []), config.patience)
    all_callbacks: list[keras.callbacks.Callback] = [LearningRateSchedule(config, trained_minutes(history))]
    if config.ema:
        all_callbacks.append(EMAWeights(resumed=initial_epoch > 0))
    all_callbacks.append(RGBMetrics(val_tiles, config, trained_minutes(history)))
    if checkpoint_dir is not None:
        all_callbacks.append(EpochCheckpoint(checkpoint_dir, history))
    all_callbacks += list(callbacks)
    all_callbacks += [early_stopping, TimeBudget(config.max_minutes)]
    if log_dir is not None:
        all_callbacks.append(keras.callbacks.TensorBoard(str(log_dir), write_graph=False))
    keras_history = model.fit(
        train_ds,
        epochs=config.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=data.steps_per_epoch(len(train_tiles), config.batch_size, config.steps_per_epoch),
        callbacks=all_callbacks,
        verbose=verbose,
        shuffle=False,  # tf.data already shuffles
    )
    if checkpoint_dir is None:
        history = {k: [float(v) for v in vals] for k, vals in keras_history.history.items()}
    return load_best(checkpoint_dir, model), history  # best may predate a resume


def trained_minutes(history: dict[str, list[float]]) -> float:
    """The minutes a fit has trained by its logged clock, resumes included (0 before any epoch)."""
    return (history.get(ELAPSED_KEY) or [0.0])[-1]


def _budget_spent(history: dict[str, list[float]], config: TrainConfig) -> bool:
    """True when a resumed history already used the whole time budget: a rerun after the
    budget ended finishes the run instead of training for another budget."""
    return bool(config.max_minutes) and trained_minutes(history) >= config.max_minutes


def _stopped_early(history: dict[str, list[float]], config: TrainConfig) -> bool:
    """True when a resumed history already ran out of patience (nothing left to train)."""
    scores = history.get(MONITOR_KEY, [])
    return bool(scores) and len(scores) - 1 - int(np.argmax(scores)) >= config.patience > 0


class EpochTrainer:
    """One model trained an epoch at a time under outside control (k folds in lockstep).

    Same model, loss, data pipeline and metrics as fit(); the caller owns the epoch loop.
    """

    def __init__(self, config: TrainConfig, train_tiles: np.ndarray, val_tiles: np.ndarray):
        self.config, self.validation = config, ValidationSet(val_tiles, config)
        self.model = compile_model(config, train_tiles)
        self.dataset = data.make_dataset(
            train_tiles, config.image_size, config.batch_size, config.seed, training=True, zoom=config.zoom
        )
        self.steps = data.steps_per_epoch(len(train_tiles), config.batch_size, config.steps_per_epoch)
        self.epoch = 0
        self.callbacks = [LearningRateSchedule(config)] + ([EMAWeights()] if config.ema else [])

    def run_epoch(self) -> dict[str, float]:
        """Train one more epoch; the train loss and validation RGB scores (val_ssim, ...)."""
        result = self.model.fit(
            self.dataset, epochs=self.epoch + 1, initial_epoch=self.epoch,
            steps_per_epoch=self.steps, verbose=0, shuffle=False, callbacks=self.callbacks,
        )
        self.epoch += 1
        scores = self.validation.score(self.model)
        return {
            "loss": float(result.history["loss"][-1]),
            **{f"val_{k}": v for k, v in scores.items()},
            MONITOR_KEY: monitor_score(self.config, scores, self.validation.truth_colourfulness),
        }
