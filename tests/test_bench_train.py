"""bench/bench_train.py's FLOP count and bench/torch_reference.py's PyTorch twin."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bench_train import keras_conv_macs  # noqa: E402

from unet_tf.models import build_unet  # noqa: E402


@pytest.mark.parametrize(
    "upsampling, expected",
    [
        # enc1 1->2 and 2->2 at 8x8, bottleneck 2->4 and 4->4 at 4x4, dec1_up, dec1 4->2 and 2->2, head 2->1
        ("nearest", 64 * 9 * 2 + 64 * 9 * 4 + 16 * 9 * 8 + 16 * 9 * 16 + 64 * 4 * 8 + 64 * 9 * 8 + 64 * 9 * 4 + 64 * 2),
        # a 2x2 stride-2 transposed conv 4->2: every one of the 4x4 input pixels scatters 2x2x2 outputs
        (
            "transpose",
            64 * 9 * 2 + 64 * 9 * 4 + 16 * 9 * 8 + 16 * 9 * 16 + 16 * 4 * 8 + 64 * 9 * 8 + 64 * 9 * 4 + 64 * 2,
        ),
    ],
)
def test_conv_macs_by_hand(upsampling, expected):
    model = build_unet(n_classes=2, base_filters=2, depth=1, upsampling=upsampling)
    assert keras_conv_macs(model, 8) == expected


@pytest.mark.parametrize("model", ["unet", "resunet"])
@pytest.mark.parametrize("upsampling", ["nearest", "bilinear", "transpose"])
def test_torch_twin_matches_keras(model, upsampling):
    pytest.importorskip("torch")
    from torch_reference import check_against_keras

    result = check_against_keras(model, base_filters=2, depth=2, upsampling=upsampling, size=16, batch=2)
    assert result["keras"] == result["torch"]
    assert result["max_abs_diff"]["inference"] < 1e-5
    assert result["max_abs_diff"]["training"] < 1e-4
