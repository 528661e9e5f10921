"""Training precision: float32, or mixed bfloat16 where the CPU computes bfloat16 natively.

``mixed_bfloat16`` keeps the weights in float32 and computes convolutions in
bfloat16; on a CPU with ``avx512_bf16`` or AMX it trains a U-Net step ~30 %
faster (BENCHMARKS.md), on one without it would be emulated and slower. So
``auto`` chooses it only when ``/proc/cpuinfo`` lists one of those flags and
no GPU is used, and never assumes it. Saved models are read back in float32
(:func:`float32_model`), so a model trained in bfloat16 predicts the same way
on any CPU.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Callable

from unet_tf.runtime import cpu_flags, onednn_note

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def isa_allows_bf16(cap: str | None = None) -> bool:
    """False when ``ONEDNN_MAX_CPU_ISA`` caps oneDNN below its bfloat16 instructions (e.g. ``AVX2``)."""
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA", "") if cap is None else cap).upper()
    return not cap or cap in ("ALL", "DEFAULT") or any(k in cap for k in ("BF16", "FP16", "AMX", "AVX10"))


def resolve_precision(name: str, gpus: int = 0, flags: set[str] | None = None) -> str:
    """``float32`` or ``mixed_bfloat16`` for ``train.precision`` ``name`` (``auto``: bfloat16 on a bf16 CPU, no GPU)."""
    if name != "auto":
        return name
    flags = cpu_flags() if flags is None else flags
    native = any(f in flags for f in BF16_FLAGS) and isa_allows_bf16()
    return "mixed_bfloat16" if gpus == 0 and native else "float32"


def precision_reason(precision: str, flags: set[str] | None = None) -> str:
    """Why ``auto`` chose ``precision``, for the run log."""
    flags = cpu_flags() if flags is None else flags
    found = [f for f in BF16_FLAGS if f in flags]
    if precision == "mixed_bfloat16":
        return f"this CPU has {', '.join(found)}"
    if found and not isa_allows_bf16():
        return f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA')} leaves out bfloat16"
    return "a GPU is used" if found else "this CPU has no avx512_bf16 or amx_bf16"


def choose_precision(name: str, gpus: int = 0, log: Callable[[str], None] = print) -> str:
    """:func:`resolve_precision` for a run with ``gpus`` GPUs, said in the run log when ``auto`` chose (and
    whether TensorFlow's oneDNN CPU kernels are on, :func:`unet_tf.runtime.onednn_note`)."""
    precision = resolve_precision(name, gpus=gpus)
    if precision != name:
        log(f"precision {precision} (`train.precision` {name}: {precision_reason(precision)})")
    if note := onednn_note():
        log(note)
    return precision


@contextmanager
def dtype_policy(name: str):
    """Layers built inside take the Keras dtype policy ``name``; the previous global policy comes back after."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def float32_model(model: Any) -> Any:
    """``model`` itself when every layer computes in float32, else a float32 copy with the same weights."""
    import keras

    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model

    def clone(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
