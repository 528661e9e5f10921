"""Block tasks with injected faults, for the tests (worker processes must import them: they live here).

Pass one as ``predict_blockwise(..., block_task=functools.partial(kill_once, flag))``.
"""

from __future__ import annotations

import os
from pathlib import Path

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
