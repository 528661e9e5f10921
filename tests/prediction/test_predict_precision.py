"""Prediction in mixed bfloat16: float32 probabilities close to float32's, ``auto`` from CPU flags, the flag."""

from __future__ import annotations

import numpy as np
import pytest

from unet_tf.config import PredictConfig
from unet_tf.errors import UserInputError
from unet_tf.training import precision as prec
from unet_tf.training.precision import choose_predict_precision, resolve_predict_precision

BF16_TOLERANCE = 0.02  # max |p_bf16 - p_f32| of a tiny untrained U-Net: bfloat16 keeps 8 significant bits (0.4 %)


@pytest.fixture(scope="module")
def loaded(tem_model_file):
    """(float32 model, mixed bfloat16 model) of the session's tiny 5-class model file (base 4, depth 2)."""
    from unet_tf.models.file import load_model_and_info

    return (load_model_and_info(tem_model_file)[0], load_model_and_info(tem_model_file, precision="mixed_bfloat16")[0])


def test_bf16_model_computes_in_bf16_up_to_the_head_and_keeps_float32_weights(loaded):
    f32, bf16 = loaded
    policies = {layer.name: layer.dtype_policy.name for layer in bf16.layers}
    assert policies["enc1_conv1"] == policies["head_conv"] == "mixed_bfloat16"
    assert policies["probabilities"] == policies["unet_tf_info"] == "float32"
    assert {layer.dtype_policy.name for layer in f32.layers} == {"float32"}
    for a, b in zip(f32.get_weights(), bf16.get_weights(), strict=True):
        assert b.dtype == np.float32
        np.testing.assert_array_equal(a, b)


def test_bf16_predict_fn_gives_float32_probabilities_close_to_float32(loaded):
    from unet_tf.prediction.tiled import make_predict_fn

    f32, bf16 = loaded
    x = np.random.default_rng(0).random((2, 64, 64, 1)).astype(np.float32)
    want, got = make_predict_fn(f32)(x), make_predict_fn(bf16)(x)
    assert got.dtype == np.float32 and got.shape == want.shape == (2, 64, 64, 5)
    assert 0.0 <= got.min() and got.max() <= 1.0
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)  # the softmax runs in float32
    diff = np.abs(got - want).max()
    assert 0 < diff < BF16_TOLERANCE  # not vacuous: bfloat16 did compute something else


def test_prediction_model_converts_both_ways_and_keeps_a_model_already_so(loaded):
    from unet_tf.training.precision import prediction_model

    f32, bf16 = loaded
    assert prediction_model(bf16, "mixed_bfloat16") is bf16
    assert prediction_model(f32, "float32") is f32
    back = prediction_model(bf16, "float32")
    x = np.random.default_rng(1).random((1, 32, 32, 1)).astype(np.float32)
    np.testing.assert_array_equal(back(x), f32(x))
    with pytest.raises(ValueError, match="resolve auto first"):
        prediction_model(f32, "auto")


def test_loading_in_an_unknown_precision_is_one_line(tem_model_file):
    from unet_tf.models.file import load_model_and_info

    with pytest.raises(
        UserInputError, match=r"^`predict.precision` 'half': choose one of auto, float32, mixed_bfloat16$"
    ):
        load_model_and_info(tem_model_file, precision="half")


MEASURED_GOOD = {"avx512_bf16": (1.6, 0.9995)}


@pytest.mark.parametrize(
    "name, gpus, flags, measured, expected",
    [
        ("auto", 0, {"avx2", "avx512f", "avx512_bf16"}, MEASURED_GOOD, "mixed_bfloat16"),
        ("auto", 0, {"avx2", "avx512f", "avx512_bf16"}, {"avx512_bf16": (1.2, 0.9999)}, "float32"),  # too slow
        ("auto", 0, {"avx2", "avx512f", "avx512_bf16"}, {"avx512_bf16": (1.6, 0.998)}, "float32"),  # masks differ
        ("auto", 0, {"avx512_bf16", "amx_bf16", "amx_tile"}, MEASURED_GOOD, "float32"),  # AMX: not measured
        ("auto", 0, {"avx512_bf16", "amx_bf16"}, {**MEASURED_GOOD, "amx_bf16": (1.5, 0.9992)}, "mixed_bfloat16"),
        ("auto", 0, {"avx512_bf16", "amx_bf16"}, {**MEASURED_GOOD, "amx_bf16": (1.5, 0.9985)}, "float32"),
        ("auto", 0, {"avx2", "avx512f"}, MEASURED_GOOD, "float32"),  # emulated bfloat16
        ("auto", 1, {"avx512_bf16"}, MEASURED_GOOD, "float32"),  # a GPU predicts
        ("float32", 0, {"avx512_bf16"}, MEASURED_GOOD, "float32"),
        ("mixed_bfloat16", 0, {"avx2"}, MEASURED_GOOD, "mixed_bfloat16"),  # asked for explicitly
    ],
)
def test_auto_follows_the_measured_rule(monkeypatch, name, gpus, flags, measured, expected):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(prec, "PREDICT_MEASURED", measured)
    precision, why = resolve_predict_precision(name, gpus=gpus, flags=flags)
    assert precision == expected
    assert why.startswith(f"`predict.precision` {name}")


def test_auto_is_float32_when_onednn_is_capped_below_bf16(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setattr(prec, "PREDICT_MEASURED", MEASURED_GOOD)
    assert resolve_predict_precision("auto", flags={"avx512_bf16"}) == (
        "float32",
        "`predict.precision` auto: ONEDNN_MAX_CPU_ISA=AVX2 leaves out bfloat16",
    )


@pytest.mark.parametrize("kind", ["avx512_bf16", "amx_bf16"])
def test_the_shipped_figures_decide_auto_per_cpu_kind(monkeypatch, kind):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    speedup, agreement = prec.PREDICT_MEASURED[kind]
    holds = speedup >= prec.PREDICT_MIN_SPEEDUP and agreement >= prec.PREDICT_MIN_AGREEMENT
    precision, why = resolve_predict_precision("auto", flags={"avx512_bf16", kind})
    assert precision == ("mixed_bfloat16" if holds else "float32")
    assert f"{speedup:.2f}x" in why and f"{100 * agreement:.2f} %" in why


def test_the_choice_is_said_once():
    lines = []
    assert choose_predict_precision("float32", log=lines.append) == "float32"
    assert lines == ["prediction in float32 (`predict.precision` float32)"]


def test_predict_config_precision():
    assert PredictConfig().precision == "auto"
    with pytest.raises(UserInputError, match=r"^`predict.precision` 'fp16': choose one of auto, float32"):
        PredictConfig(precision="fp16")


def test_cli_flag_parses_and_an_invalid_value_is_one_line(capsys):
    from unet_tf.cli.predict import config_from_args, parse_args

    assert config_from_args(parse_args(["--weights", "m.keras"])).precision == "auto"
    args = parse_args(["--weights", "m.keras", "--precision", "mixed_bfloat16"])
    assert config_from_args(args).precision == "mixed_bfloat16"
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--weights", "m.keras", "--precision", "half"])
    assert exit_info.value.code == 2
    error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("predict.py: error")]
    assert len(error) == 1  # argparse quotes the choices or not, by Python version
    assert error[0].startswith("predict.py: error: argument --precision: invalid choice: 'half' (choose from ")


def test_predict_py_in_bf16_says_so_once_and_writes_probabilities_close_to_float32(tmp_path, tem_model_file, capsys):
    import tifffile

    from unet_tf.cli.predict import main as predict_main

    image = tmp_path / "in" / "a.tif"
    image.parent.mkdir()
    tifffile.imwrite(image, np.random.default_rng(0).integers(0, 60000, (48, 40)).astype(np.uint16))
    probs = {}
    for precision in ("float32", "mixed_bfloat16"):
        out = tmp_path / precision
        flags = ["--input", str(image), "--out", str(out), "--tile", "32", "--overlap", "8", "--save-probabilities"]
        assert predict_main(["--weights", str(tem_model_file), "--precision", precision, *flags]) == 0
        said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("prediction in ")]
        assert len(said) == 1 and said[0].startswith(f"prediction in {precision} (")
        probs[precision] = tifffile.imread(out / "a_prob.tif")
    assert probs["mixed_bfloat16"].dtype == np.float32
    assert 0 < np.abs(probs["mixed_bfloat16"] - probs["float32"]).max() < BF16_TOLERANCE
