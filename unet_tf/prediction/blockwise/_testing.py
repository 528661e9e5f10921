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

    _store.save_block(job.out, block.name, ring=np.zeros((0, 0), np.int32), count=np.int64(0), present=np.zeros(0))
    return 0
