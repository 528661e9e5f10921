"""Block tasks with injected faults, for the tests (worker processes must import them: they live here).

Pass one as ``predict_blockwise(..., block_task=functools.partial(kill_once, flag))``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._task import run_block


def kill_once(flag: str, index: tuple[int, int], job, block) -> int:
    """Kill this worker process the first time block ``index`` runs (``flag`` records it); then run normally."""
    if tuple(block.index) == tuple(index) and not Path(flag).exists():
        Path(flag).write_text("killed\n")
        os._exit(1)
    return run_block(job, block)


def fail_on(index: tuple[int, int], job, block) -> int:
    """Raise on block ``index`` (a run stopped midway); run the others normally."""
    if tuple(block.index) == tuple(index):
        raise RuntimeError(f"stopped at block {block.name}")
    return run_block(job, block)


def noop_block(job, block) -> int:
    """No prediction: only the block's completion files (the scheduler's own cost per block, for the benchmark)."""
    from . import _store

    empty = np.zeros(0, np.int64)
    _store.save_block(
        job.out, block.name, ring=np.zeros((0, 0), np.int32), count=np.int64(0), present=empty, firsts=empty
    )
    return 0


def warm_up(path: str, mtime: float, tile: int, batch_size: int, precision: str = "float32") -> float:
    """Load the model in this worker (:func:`cached_engine`: once per process) and run one batch of zeros, so
    TensorFlow's import, the model load and the first trace are paid here; the seconds it took."""
    import time

    from ._task import cached_engine

    t0 = time.perf_counter()
    predict_fn, _ = cached_engine(path, mtime, precision)
    predict_fn(np.zeros((batch_size, tile, tile, 1), np.float32))
    return time.perf_counter() - t0
