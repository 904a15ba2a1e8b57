"""colorize/precision.py: "auto" is bf16 exactly where the CPU says it computes bf16."""

from colorize import precision
from colorize.config import TrainConfig
from colorize.model import build_unet

AMX = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
AVX512_ONLY = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n"


def test_bf16_is_detected_from_the_cpu_flags():
    assert precision.cpu_has_bf16(AMX)
    assert not precision.cpu_has_bf16(AVX512_ONLY)
    assert not precision.cpu_has_bf16("")  # no flags line (not Linux): never assume


def test_explicit_precisions_pass_through_and_auto_is_one_of_them():
    assert precision.resolve("float32") == "float32"
    assert precision.resolve("mixed_float16") == "mixed_float16"
    assert precision.resolve("auto") in ("float32", "mixed_bfloat16")


def test_training_keeps_float32_under_auto_while_a_pretrained_encoder_is_fine_tuned():
    assert precision.training_policy("auto", fine_tunes_encoder=True) == "float32"
    assert precision.training_policy("auto", fine_tunes_encoder=False) == precision.resolve("auto")
    assert precision.training_policy("mixed_bfloat16", fine_tunes_encoder=True) == "mixed_bfloat16"
    assert TrainConfig(encoder="efficientnet-lite0", encoder_lr_scale=0.1).fine_tunes_encoder
    assert not TrainConfig(encoder="efficientnet-lite0", encoder_lr_scale=0.0).fine_tunes_encoder
    assert not TrainConfig(encoder="none", encoder_lr_scale=0.1).fine_tunes_encoder


def test_an_auto_model_computes_in_the_resolved_policy():
    model = build_unet(TrainConfig(image_size=16, depth=2, base_filters=4, precision="auto"))
    conv = model.get_layer("down0_conv1")
    assert conv.dtype_policy.name == precision.resolve("auto")
    assert model.get_layer("ab").dtype_policy.name == "float32"  # the output stays exact
