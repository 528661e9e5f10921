"""TensorFlow's oneDNN CPU kernels on every x86-64 Linux CPU with AVX2, not only the newest.

TensorFlow turns its oneDNN kernels on by default only where the CPU has
avx512_vnni, avx512_bf16, avx_vnni or AMX (``DefaultOneDnnPolicy`` in
``tensorflow/core/util/port.cc``). On every other CPU (AVX2-only EPYCs and
Xeons, most laptops) it runs its Eigen kernels, built for AVX, which train our
U-Net 1.7x slower than oneDNN restricted to AVX2 (BENCHMARKS.md, "Round 4"), and
slower than PyTorch. So unet_tf sets ``TF_ENABLE_ONEDNN_OPTS=1`` before
TensorFlow loads, on x86-64 Linux with AVX2, unless the user has set it (either
way: ``0`` keeps Eigen). This module imports no TensorFlow.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import MutableMapping

from .precision import cpu_flags

ENV = "TF_ENABLE_ONEDNN_OPTS"
# where TensorFlow's own default is already "on"
TF_DEFAULT_ON_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
_set_by_us = False


def should_enable(environ: MutableMapping[str, str], flags: set[str], system: str, machine: str) -> bool:
    """True where TensorFlow would leave oneDNN off but it helps: x86-64 Linux, AVX2, no newer
    flag that turns it on anyway, and no choice of the user's in ``TF_ENABLE_ONEDNN_OPTS``."""
    if ENV in environ or system != "Linux" or machine.lower() not in ("x86_64", "amd64"):
        return False
    return "avx2" in flags and not any(f in flags for f in TF_DEFAULT_ON_FLAGS)


def prefer_onednn(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``TF_ENABLE_ONEDNN_OPTS=1`` when :func:`should_enable` (and TensorFlow is not loaded
    yet: then it is too late); returns whether it was set."""
    global _set_by_us
    environ = os.environ if environ is None else environ
    if "tensorflow" in sys.modules or not should_enable(environ, cpu_flags(), platform.system(), platform.machine()):
        return False
    environ[ENV] = "1"
    _set_by_us = environ is os.environ
    return True


def onednn_enabled() -> bool | None:
    """Whether the loaded TensorFlow runs its oneDNN kernels (None: cannot tell)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def onednn_note() -> str | None:
    """One line for the run log when the CPU kernels are not TensorFlow's default choice, or are slow."""
    enabled = onednn_enabled()
    if enabled and _set_by_us:
        return (
            "TensorFlow's oneDNN kernels: on (unet_tf set TF_ENABLE_ONEDNN_OPTS=1; "
            "TensorFlow alone leaves them off on this CPU)"
        )
    if enabled is False and "avx2" in cpu_flags() and os.environ.get(ENV, "").strip().lower() not in ("0", "false"):
        return (
            "note: TensorFlow's oneDNN kernels are off on this CPU, so training runs about 1.7x slower: "
            "import unet_tf before tensorflow, or set TF_ENABLE_ONEDNN_OPTS=1"
        )
    return None
