"""unet_tf turns TensorFlow's oneDNN kernels on where TensorFlow alone would leave them off (AVX2-only CPUs)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from unet_tf import runtime as onednn
from unet_tf.runtime import cpu_flags

REPO = Path(__file__).resolve().parents[1]
AVX2_ONLY = {"sse4_2", "avx", "fma", "avx2"}


@pytest.mark.parametrize(
    "environ, flags, system, machine, expected",
    [
        ({}, AVX2_ONLY, "Linux", "x86_64", True),  # Zen 2/3 EPYC, most laptops: TensorFlow leaves it off
        ({}, AVX2_ONLY | {"avx512f", "avx512_vnni"}, "Linux", "x86_64", False),  # TensorFlow turns it on itself
        ({}, AVX2_ONLY | {"avx_vnni"}, "Linux", "x86_64", False),
        ({}, AVX2_ONLY | {"amx_tile"}, "Linux", "x86_64", False),
        ({"TF_ENABLE_ONEDNN_OPTS": "0"}, AVX2_ONLY, "Linux", "x86_64", False),  # the user's choice stands
        ({"TF_ENABLE_ONEDNN_OPTS": "1"}, AVX2_ONLY, "Linux", "x86_64", False),
        ({}, {"sse4_2", "avx"}, "Linux", "x86_64", False),  # no AVX2: not measured, left alone
        ({}, AVX2_ONLY, "Darwin", "x86_64", False),
        ({}, set(), "Linux", "aarch64", False),
    ],
)
def test_should_enable(environ, flags, system, machine, expected):
    assert onednn.should_enable(environ, flags, system, machine) is expected


def test_prefer_onednn_sets_the_variable_only_before_tensorflow_loads(monkeypatch):
    monkeypatch.setattr(onednn, "cpu_flags", lambda: set(AVX2_ONLY))
    monkeypatch.setattr(onednn.platform, "system", lambda: "Linux")
    monkeypatch.setattr(onednn.platform, "machine", lambda: "x86_64")
    monkeypatch.setitem(sys.modules, "tensorflow", object())
    environ = {}
    assert onednn.prefer_onednn(environ) is False and environ == {}  # too late: TensorFlow has read it
    monkeypatch.delitem(sys.modules, "tensorflow")
    assert onednn.prefer_onednn(environ) is True
    assert environ == {"TF_ENABLE_ONEDNN_OPTS": "1"}
    assert onednn.prefer_onednn(environ) is False  # now it is set: never overwritten


def _onednn_in_fresh_process(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if env_value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = env_value
    code = "import unet_tf, tensorflow; from unet_tf.runtime import onednn_enabled; print(onednn_enabled())"
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout.strip().splitlines()[-1]


@pytest.mark.slow  # two fresh processes that import TensorFlow
@pytest.mark.skipif("avx2" not in cpu_flags(), reason="needs an x86-64 CPU with AVX2")
def test_tensorflow_runs_onednn_after_importing_unet_tf_unless_told_not_to():
    assert _onednn_in_fresh_process(None) == "True"  # on any AVX2 CPU, whatever TensorFlow's own default
    assert _onednn_in_fresh_process("0") == "False"
