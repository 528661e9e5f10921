"""An experiment folder of many runs (the ablation grid, k-fold cross-validation): its settings file,
which a rerun into the same folder must match, and durations in log lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from unet_tf.errors import UserInputError
from unet_tf.io.writers import atomic_path


def format_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 05 min``."""
    if not np.isfinite(seconds):
        return "unknown"
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def check_settings(path: Path, settings: dict, what: str = "an ablation") -> None:
    """Refuse to mix runs of different base settings in one output folder (``what`` it holds, in the message)."""
    if not path.is_file():
        return
    old, new = _flatten(json.loads(path.read_text())), _flatten(settings)
    diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diff:
        shown = ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:3])
        raise UserInputError(
            f"{path.parent}: holds {what} with other settings ({shown}{' ...' if len(diff) > 3 else ''}); "
            "use another `out_dir` or the same settings"
        )


def write_settings(path: Path, settings: dict) -> None:
    """Write the folder's settings file (JSON, atomically)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(settings, indent=2) + "\n")
