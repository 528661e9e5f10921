"""Mixed bfloat16 only where the CPU has it; saved models always predict in float32."""

import keras
import numpy as np
import pytest

from unet_tf.config import ModelConfig, RunConfig, TrainConfig, replace_config
from unet_tf.errors import UserInputError
from unet_tf.models import build_model
from unet_tf.models.file import load_model_and_info
from unet_tf.runtime import cpu_flags
from unet_tf.training.precision import dtype_policy, float32_model, resolve_precision


def test_cpu_flags_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\nbogomips\t: 5000\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize(
    "name, gpus, flags, expected",
    [
        ("auto", 0, {"avx2", "avx512f", "avx512_bf16"}, "mixed_bfloat16"),
        ("auto", 0, {"avx2", "amx_bf16", "amx_tile"}, "mixed_bfloat16"),
        ("auto", 0, {"avx2", "avx512f"}, "float32"),  # AVX-512 without BF16: emulated, slower
        ("auto", 1, {"avx512_bf16"}, "float32"),  # a GPU trains: not this CPU's business
        ("float32", 0, {"avx512_bf16"}, "float32"),
        ("mixed_bfloat16", 0, {"avx2"}, "mixed_bfloat16"),  # asked for explicitly
    ],
)
def test_auto_chooses_bfloat16_only_on_a_bf16_cpu(monkeypatch, name, gpus, flags, expected):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert resolve_precision(name, gpus=gpus, flags=flags) == expected


@pytest.mark.parametrize(
    "cap, allowed", [("", True), ("AVX2", False), ("avx512_core", False), ("AVX512_CORE_BF16", True)]
)
def test_onednn_isa_cap_below_bf16_means_float32(monkeypatch, cap, allowed):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    expected = "mixed_bfloat16" if allowed else "float32"
    assert resolve_precision("auto", flags={"avx512_bf16"}) == expected


def test_unknown_precision_is_a_user_error():
    with pytest.raises(UserInputError, match="precision 'half'"):
        TrainConfig(precision="half")


def test_float32_model_computes_what_a_float32_build_computes():
    cfg = ModelConfig(base_filters=4, depth=2)
    with dtype_policy("mixed_bfloat16"):
        mixed = build_model(cfg, n_classes=3)
    assert keras.config.dtype_policy().name == "float32"  # restored
    assert mixed.get_layer("enc1_conv1").dtype_policy.name == "mixed_bfloat16"
    plain = build_model(cfg, n_classes=3)
    plain.set_weights(mixed.get_weights())
    converted = float32_model(mixed)
    assert {layer.dtype_policy.name for layer in converted.layers} == {"float32"}
    x = np.random.default_rng(0).random((1, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(converted(x), plain(x), atol=1e-6)
    assert float32_model(plain) is plain


def test_bfloat16_run_writes_a_model_that_loads_in_float32(tmp_path):
    from unet_tf.data.splits import TrainingData
    from unet_tf.training.run import train

    rng = np.random.default_rng(0)
    images = [rng.random((64, 64)).astype(np.float32) for _ in range(3)]
    masks = [(im > 0.5).astype(np.uint8) * 255 for im in images]
    data = TrainingData.from_arrays(images, masks, (0, 255))
    cfg = replace_config(
        RunConfig(),
        data={"patch_size": 32, "patches_per_image": 2},
        model={"base_filters": 4, "depth": 2},
        train={"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "out": str(tmp_path), "precision": "mixed_bfloat16"},
    )
    summary = train(cfg, data=data, log=lambda line: None, verbose=0)
    assert summary.precision == "mixed_bfloat16"
    raw = keras.models.load_model(tmp_path / "best.keras", compile=False)
    assert raw.get_layer("enc1_conv1").dtype_policy.name == "mixed_bfloat16"
    model, info = load_model_and_info(tmp_path / "best.keras")
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    np.testing.assert_array_equal([w.dtype for w in model.get_weights()], ["float32"] * len(model.get_weights()))
    assert info.class_values == (0, 255)
