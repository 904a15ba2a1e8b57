"""Training and inference throughput of the U-Net on this machine, against its matmul peak.

    python bench/throughput.py            # 64 and 128 px, float32 and mixed_bfloat16
    python bench/throughput.py --config photos   # the real-photo recipe's model
    python bench/throughput.py --quick    # a smoke run
    python bench/throughput.py --config photos --sizes 64 --heads   # the heads side by side
    python bench/throughput.py --config pretrained --sizes 192 --encoder-lr-scales 0,0.1
                                          # the pretrained encoder frozen and fine-tuned

Prints images/s for a training step and for inference, FLOPs per image counted from the
model, the achieved GFLOP/s and its ratio to a float32 matmul peak measured in the same
run, and mixed_bfloat16 as a ratio to float32 where the CPU supports bf16. `--heads`
instead times the model with each head (regression and bins, each also at a coarse output
stride) at the policy `auto` picks, each as a ratio to the full-resolution regression head.
`--encoder-lr-scales` instead times the training step at each encoder learning-rate share
(0 freezes the pretrained encoder, so its backward pass is skipped), in float32 and bf16,
each as a ratio to the first.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import machine  # noqa: E402
from colorize import model as model_module  # noqa: E402
from colorize import precision, presets  # noqa: E402
from colorize.config import TrainConfig  # noqa: E402
from colorize.losses import join_target  # noqa: E402
from colorize.model import count_flops  # noqa: E402
from colorize.training import compile_model  # noqa: E402


def matmul_peak(seconds: float) -> float:
    """Best float32 GFLOP/s of a 2048^3 matmul: the machine's practical ceiling."""
    n = 2048
    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    fn = tf.function(lambda: tf.matmul(a, b))
    fn().numpy()
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        fn().numpy()
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def timed(step, repeats: int) -> float:
    """Median seconds of `step()` over `repeats` runs after two warm-ups."""
    step()
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(config: TrainConfig, batch: int, repeats: int, policy: str, keras_bn: bool = False) -> dict:
    """Images/s of a training step and of inference; `keras_bn` builds the model with
    Keras's own BatchNormalization (the layer colorize used before its fused one)."""
    config = dataclasses.replace(config, precision=policy)  # the layers take it from the config
    fused = model_module.FusedBatchNormalization
    try:
        if keras_bn:
            model_module.FusedBatchNormalization = keras.layers.BatchNormalization
        model = compile_model(config)
        size = config.image_size
        x = np.random.default_rng(0).uniform(-0.5, 0.5, (batch, size, size, 1)).astype("float32")
        ab = np.random.default_rng(1).uniform(-0.5, 0.5, (batch, size, size, 2)).astype("float32")
        y = join_target(ab, x)
        train = timed(lambda: model.train_on_batch(x, y), repeats)
        infer_fn = tf.function(lambda v: model(v, training=False))
        infer = timed(lambda: infer_fn(x).numpy(), repeats)
    finally:
        model_module.FusedBatchNormalization = fused
    return {"train_ips": batch / train, "infer_ips": batch / infer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="one small size, few repeats")
    parser.add_argument("--config", default="seed",
                        help="the model of this preset (seed, photos) or TrainConfig file (default seed)")
    parser.add_argument("--keras-bn", action="store_true",
                        help="also time Keras's own BatchNormalization: the fused layer's baseline")
    parser.add_argument("--heads", action="store_true",
                        help="time the regression head, the bins head and the bins head at stride 4")
    parser.add_argument("--encoder-lr-scales", metavar="S,S,...",
                        help="time the step at each share of the learning rate for the pretrained encoder "
                             "(e.g. 0,0.1: frozen against fine-tuned)")
    args = parser.parse_args()
    sizes = [32] if args.quick else [int(s) for s in args.sizes.split(",")]
    repeats = 3 if args.quick else args.repeats

    print(f"machine: {machine()}; TensorFlow {tf.__version__}, threads: intra {tf.config.threading.get_intra_op_parallelism_threads() or 'auto'}")
    base = presets.load(args.config)
    print(f"--precision auto trains this model in "
          f"{precision.training_policy('auto', base.fine_tunes_encoder)} here (native bf16: "
          f"{'yes' if precision.cpu_has_bf16() else 'no'})")
    peak = matmul_peak(1.0 if args.quick else 5.0)
    print(f"float32 matmul peak (2048^3): {peak:.1f} GFLOP/s")
    print(f"model: depth {base.depth}, {base.base_filters} base filters, global context "
          f"{'on' if base.global_context else 'off'}, batch {args.batch}")
    if args.heads:
        compare_heads(base, sizes, args.batch, repeats)
        return
    if args.encoder_lr_scales:
        if base.encoder == "none":
            parser.error("--encoder-lr-scales needs a configuration with a pretrained encoder (--config pretrained)")
        compare_encoder_training(base, sizes, args.batch, repeats,
                                 [float(v) for v in args.encoder_lr_scales.split(",")])
        return
    bf16 = precision.cpu_has_bf16()
    print(f"{'size':>5} {'policy':>24} {'train img/s':>12} {'infer img/s':>12} {'GFLOP/img (fwd)':>16} "
          f"{'train GFLOP/s':>14} {'% of peak':>10} {'infer GFLOP/s':>14} {'% of peak':>10}")
    for size in sizes:
        config = dataclasses.replace(base, image_size=size)
        fwd = count_flops(config, size) / 1e9
        rows = {}
        variants = [(p, False) for p in ["float32"] + (["mixed_bfloat16"] if bf16 else [])]
        if args.keras_bn:
            variants = [(p, k) for p, _ in variants for k in (True, False)]
        for policy, keras_bn in variants:
            label = policy + (" keras-bn" if keras_bn else "")
            r = rows[label] = measure(config, args.batch, repeats, policy, keras_bn)
            train_gflops = r["train_ips"] * 3 * fwd  # backward ~ 2x forward
            infer_gflops = r["infer_ips"] * fwd
            print(f"{size:>5} {label:>24} {r['train_ips']:>12.1f} {r['infer_ips']:>12.1f} {fwd:>16.2f} "
                  f"{train_gflops:>14.1f} {100 * train_gflops / peak:>9.1f}% {infer_gflops:>14.1f} "
                  f"{100 * infer_gflops / peak:>9.1f}%")
        for policy in ("float32", "mixed_bfloat16"):
            if policy + " keras-bn" in rows and policy in rows:
                b, f = rows[policy], rows[policy + " keras-bn"]
                print(f"{size:>5} {policy}: fused BN / Keras BN: train {b['train_ips'] / f['train_ips']:.2f}x, "
                      f"infer {b['infer_ips'] / f['infer_ips']:.2f}x")
        if "mixed_bfloat16" in rows:
            b, f = rows["mixed_bfloat16"], rows["float32"]
            print(f"{size:>5} bf16/fp32 ratio: train {b['train_ips'] / f['train_ips']:.2f}x, "
                  f"infer {b['infer_ips'] / f['infer_ips']:.2f}x")
    if not bf16:
        print("this CPU reports no bf16 support: mixed_bfloat16 not measured")


HEADS = {"regression": {"head": "regression", "output_stride": 1},
         "regression stride 2": {"head": "regression", "output_stride": 2},
         "regression stride 4": {"head": "regression", "output_stride": 4},
         "bins": {"head": "bins", "output_stride": 1},
         "bins stride 4": {"head": "bins", "output_stride": 4}}


def compare_heads(base: TrainConfig, sizes: list[int], batch: int, repeats: int) -> None:
    """Each head of HEADS on `base`'s network, at the precision `auto` picks here: the bins
    head's cost is its ~260-channel output, softmax and soft encoding at every pixel."""
    policy = precision.resolve("auto")
    print(f"{'size':>5} {'head':>20} {'train img/s':>12} {'infer img/s':>12} {'GFLOP/img (fwd)':>16} "
          f"{'train vs regression':>20} {'infer vs regression':>20}   ({policy})")
    for size in sizes:
        rows = {}
        for name, values in HEADS.items():
            config = dataclasses.replace(base, image_size=size, **values)
            r = rows[name] = measure(config, batch, repeats, policy)
            first = rows["regression"]
            print(f"{size:>5} {name:>20} {r['train_ips']:>12.1f} {r['infer_ips']:>12.1f} "
                  f"{count_flops(config, size) / 1e9:>16.2f} {r['train_ips'] / first['train_ips']:>19.2f}x "
                  f"{r['infer_ips'] / first['infer_ips']:>19.2f}x")


def compare_encoder_training(base: TrainConfig, sizes: list[int], batch: int, repeats: int,
                             scales: list[float]) -> None:
    """The training step at each encoder learning-rate share, in float32 and (where the CPU
    has it) bf16: what fine-tuning the pretrained encoder costs against freezing it."""
    policies = ["float32"] + (["mixed_bfloat16"] if precision.cpu_has_bf16() else [])
    print(f"{'size':>5} {'policy':>16} {'encoder lr share':>17} {'train img/s':>12} {'infer img/s':>12} "
          f"{'train vs first':>15}")
    for size in sizes:
        for policy in policies:
            first = None
            for scale in scales:
                config = dataclasses.replace(base, image_size=size, encoder_lr_scale=scale)
                r = measure(config, batch, repeats, policy)
                first = first or r
                print(f"{size:>5} {policy:>16} {scale:>17g} {r['train_ips']:>12.1f} {r['infer_ips']:>12.1f} "
                      f"{r['train_ips'] / first['train_ips']:>14.2f}x")


if __name__ == "__main__":
    main()
