"""Training and prediction precision: float32, or mixed bfloat16 where the CPU computes bfloat16 natively.

``mixed_bfloat16`` keeps the weights in float32 and computes convolutions in
bfloat16; on a CPU with ``avx512_bf16`` or AMX it trains a U-Net step ~30 %
faster (BENCHMARKS.md), on one without it would be emulated and slower. So
``auto`` chooses it only when ``/proc/cpuinfo`` lists one of those flags and
no GPU is used, and never assumes it. Saved models are read back in float32
(:func:`float32_model`) unless prediction asks for bfloat16, so a model trained
in bfloat16 predicts the same way on any CPU.

Prediction has its own ``auto`` (:func:`resolve_predict_precision`): mixed
bfloat16 only on the CPU kind where it was measured to be at least
:data:`PREDICT_MIN_SPEEDUP` x faster than float32 with class masks agreeing on at
least :data:`PREDICT_MIN_AGREEMENT` of pixels (``bench/bench_predict_precision.py``).
So far that is a CPU with avx512_bf16 and no AMX (a 2-core AMD EPYC: 1.56-2.0x
faster end to end, medians per model, 99.93-99.99 % of pixels with the same class
on the demo, GOWT1 and ISBI models); AMX (Intel Xeon) and GPUs were not measured and predict
in float32 under ``auto``. :func:`prediction_model` gives a loaded model in
either precision.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Callable

from unet_tf.config import PRECISION_NAMES
from unet_tf.errors import UserInputError
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


def _with_policies(model: Any, policies: dict[str, str]) -> Any:
    """``model`` itself when each layer already has the dtype policy ``policies[layer.name]``, else a copy with
    those policies and the same weights (the weights stay float32 under either policy)."""
    import keras

    if all(layer.dtype_policy.name == policies[layer.name] for layer in model.layers):
        return model

    def clone(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": policies[layer.name]})

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def float32_model(model: Any) -> Any:
    """``model`` itself when every layer computes in float32, else a float32 copy with the same weights."""
    return _with_policies(model, {layer.name: "float32" for layer in model.layers})


def mixed_bfloat16_model(model: Any) -> Any:
    """A copy of ``model`` computing in mixed bfloat16 as a model built under that policy does.

    Every layer up to the last one with weights (the output head) computes in
    bfloat16 with float32 weights; the input and the weightless tail after the
    head (the ``probabilities`` activation, the info layer) stay float32, so the
    softmax / sigmoid runs in float32 and the outputs are float32 probabilities.
    ``model`` itself when it already is so.
    """
    layers = model.layers
    head = max((i for i, layer in enumerate(layers) if layer.weights), default=-1)
    policies = {layer.name: "mixed_bfloat16" if 0 < i <= head else "float32" for i, layer in enumerate(layers)}
    return _with_policies(model, policies)


# === Prediction ===

PREDICT_MIN_SPEEDUP = 1.3  # auto predicts in mixed bfloat16 only where it was measured at least this much faster
PREDICT_MIN_AGREEMENT = 0.999  # ... and the class masks agreed with float32 on at least this fraction of pixels
# Per CPU kind (its bfloat16 flag: amx_bf16 wins over avx512_bf16): (speed-up of predict_image over float32, the
# worst class-id agreement) over the demo (TEM), GOWT1 (bundled nuclei) and ISBI 2012 models,
# bench/bench_predict_precision.py, A/B in one process.
# avx512_bf16 without AMX: 2-core AMD EPYC (shared, load average 3-5), 2026-12-03, three runs: speed-ups demo
# 1.51x, 1.61x; GOWT1 1.52x, 2.48x; ISBI 1.58x, 1.29x, 1.78x (median per model: 1.56x, 2.00x, 1.58x; the network
# alone 1.30-1.83x, median 1.57x); class ids agree on 99.964 %, 99.987 %, 99.932 % of pixels (every run); GOWT1
# objects 70 / 70, AP@0.5 1.0.
# amx_bf16: 2-core Intel Xeon with AMX (load average 1.9), 2026-12-03: speed-ups demo 1.44x, GOWT1 1.46x, ISBI
# 1.58x (network alone 1.53x, 1.61x, 1.55x); class ids agree on 99.980 %, 99.989 %, 99.880 % (a short ISBI model,
# val Dice 0.78, many pixels near 0.5): under the rule's 99.9 %, so float32 there under auto.
PREDICT_MEASURED = {"avx512_bf16": (1.56, 0.99932), "amx_bf16": (1.46, 0.99880)}


def resolve_predict_precision(name: str, gpus: int = 0, flags: set[str] | None = None) -> tuple[str, str]:
    """(``float32`` or ``mixed_bfloat16``, why) for ``predict.precision`` ``name`` on a CPU with ``flags``.

    ``auto`` chooses mixed bfloat16 only on a CPU kind of :data:`PREDICT_MEASURED` where the measured rule
    holds (>= :data:`PREDICT_MIN_SPEEDUP` x faster, masks agreeing on >= :data:`PREDICT_MIN_AGREEMENT`): today
    a CPU with avx512_bf16 and no AMX. Float32 on a GPU, on a CPU without bfloat16 (:data:`BF16_FLAGS`), when
    ``ONEDNN_MAX_CPU_ISA`` caps oneDNN below it, and where the rule failed (AMX: masks agreed on 99.88 %).
    """
    if name not in PRECISION_NAMES:
        raise UserInputError(f"`predict.precision` {name!r}: choose one of {', '.join(PRECISION_NAMES)}")
    if name != "auto":
        return name, f"`predict.precision` {name}"
    flags = cpu_flags() if flags is None else flags
    why = "`predict.precision` auto: "
    if gpus:
        return "float32", why + "a GPU predicts (mixed bfloat16 prediction was not measured on a GPU)"
    if not any(f in flags for f in BF16_FLAGS):
        return "float32", why + "this CPU has no avx512_bf16 or amx_bf16"
    if not isa_allows_bf16():
        return "float32", why + f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA')} leaves out bfloat16"
    kind = "amx_bf16" if "amx_bf16" in flags else "avx512_bf16"
    where = "with AMX" if kind == "amx_bf16" else "with avx512_bf16 and no AMX"
    if kind not in PREDICT_MEASURED:
        return "float32", why + f"mixed bfloat16 prediction was not measured on a CPU {where}"
    speedup, agreement = PREDICT_MEASURED[kind]
    figures = f"{speedup:.2f}x the speed of float32, masks agreeing on {100 * agreement:.2f} % of pixels"
    if speedup >= PREDICT_MIN_SPEEDUP and agreement >= PREDICT_MIN_AGREEMENT:
        return "mixed_bfloat16", why + f"on this CPU kind ({where}) mixed bfloat16 measured {figures}"
    return "float32", why + f"on this CPU kind ({where}) mixed bfloat16 measured only {figures}"


def choose_predict_precision(name: str, gpus: int = 0, log: Callable[[str], None] = print) -> str:
    """:func:`resolve_predict_precision`, said in the log in one line (once per run: call it once)."""
    precision, why = resolve_predict_precision(name, gpus=gpus)
    log(f"prediction in {precision} ({why})")
    return precision


def prediction_model(model: Any, precision: str) -> Any:
    """``model`` computing in ``precision`` (``float32`` or ``mixed_bfloat16``; ``auto`` is resolved first by
    :func:`resolve_predict_precision`), same weights; ``model`` itself when it already does."""
    if precision == "float32":
        return float32_model(model)
    if precision == "mixed_bfloat16":
        return mixed_bfloat16_model(model)
    raise ValueError(f"precision must be float32 or mixed_bfloat16 (resolve auto first), got {precision!r}")
