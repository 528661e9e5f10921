"""Tables: CSV files written atomically, aligned terminal tables, and the helpers every table shares.

One place for: the CSV cell format (``None`` -> empty, NaN -> ``nan``, floats
at full precision), the printed table, the NaN-skipping mean, and the column
name of a per-class score.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from unet_tf.io.writers import atomic_path


def nanmean(values: Iterable[Any]) -> float:
    """Mean of the values that are not None or NaN; NaN when there are none (no warning)."""
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(kept)) if kept else math.nan


def score_column(score: str, class_name: str) -> str:
    """``<score>_<class>`` with non-word characters replaced: ``dice_myelinated_axon``."""
    return f"{score}_" + re.sub(r"\W+", "_", class_name)


def _csv_cell(value: Any) -> str:
    """None -> '' (not applicable); float -> shortest round-trip text (NaN -> 'nan')."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """Write ``rows`` as CSV with a header of ``columns``, atomically.

    Each row must hold only keys from ``columns`` (ValueError otherwise); a
    missing key or ``None`` is written as an empty cell, NaN as ``nan``,
    floats at full precision. The file appears complete or not at all
    (:func:`unet_tf.io.writers.atomic_path`).
    """
    columns = tuple(columns)
    known = set(columns)
    for i, row in enumerate(rows):
        extra = set(row) - known
        if extra:
            raise ValueError(f"row {i} has keys not among the columns: {sorted(extra)}")
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_csv_cell(row.get(col)) for col in columns])
    return Path(path)


def _table_cell(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else f"{float(value):.{digits}f}"
    return str(value)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], digits: int = 4) -> str:
    """Rows as an aligned plain-text table: header, dashes, one line per row.

    Floats are shown with ``digits`` decimals, ``None`` as ``-``; numbers are
    right-aligned, text left-aligned. No trailing newline.
    """
    columns = tuple(columns)
    cells = [[_table_cell(row.get(col), digits) for col in columns] for row in rows]
    numeric = [
        all(isinstance(row.get(col), (int, float, np.number)) or row.get(col) is None for row in rows)
        and any(row.get(col) is not None for row in rows)
        for col in columns
    ]
    widths = [max([len(col)] + [len(line[j]) for line in cells]) for j, col in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    out = [line(columns), "  ".join("-" * w for w in widths)]
    out += [line(values) for values in cells]
    return "\n".join(out)
