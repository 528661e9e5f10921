"""The Dask orchestration of :func:`predict_blockwise`: statistics, blocks, merge, relabel.

1. Connect (``scheduler``: :func:`unet_tf.cluster.dask_client`); an address no
   scheduler answers is a UserInputError and nothing is written.
2. Check / create the output folder (``resume`` continues one started for
   the same image, model and settings; any other existing folder is refused).
3. Normalization limits over the WHOLE image: one statistics task per block,
   summed on the client (:mod:`._predict`), kept in ``limits.json``.
4. One task per block without a completion marker (:func:`._task.run_block`);
   the model is loaded once per worker. A worker that dies mid-block loses only
   that task: Dask runs it again elsewhere and the block is rewritten whole.
5. A semantic model's ``split_touching``: the median inscribed radius of each
   class over the whole image (:mod:`._objects`), then one split task per block.
6. Instances: the ring files of all blocks -> matched labels across faces ->
   final ids in raster order of each object's first pixel (:mod:`._merge`) ->
   one relabel task per block.
7. The object table: one task per block for its whole objects, then the
   objects joined across faces, from crops (:mod:`._objects`, :mod:`._tables`).
8. The pyramid of every part.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from unet_tf.cluster import dask_client
from unet_tf.config import PredictConfig
from unet_tf.io.writers import mask_dtype
from unet_tf.io.zarr import create_output, finish_output, open_image
from unet_tf.models.file import min_size_for
from unet_tf.prediction.streaming import say_not_rescaled

from . import _store
from ._merge import final_ids, matches, neighbours
from ._objects import Measure, class_radii, object_rows
from ._plan import BlockPlan, plan_blocks
from ._predict import limits_from_statistics
from ._tables import crossing_ids, image_name, measure, write_tables
from ._task import BlockJob, block_statistics, model_info, relabel_block, run_block, split_block

DEFAULT_BLOCK_SIZE = 4096  # tiles recomputed at block faces: ~(1 + tile / block)^2 - 1 = 27 % at tile 512
HALO_DIAMETERS = 2  # the instance watershed sees this many object diameters beyond the interior


def instance_halo(overlap: int, diameter: float | None) -> int:
    """Context around a block for the instance watershed: the tile overlap, at least HALO_DIAMETERS diameters
    (64 px when the model knows no diameter)."""
    return max(overlap, math.ceil(HALO_DIAMETERS * (diameter or 32)))


@contextlib.contextmanager
def timed(stages: dict, name: str):
    """Add the seconds the ``with`` body takes to ``stages[name]``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        stages[name] = stages.get(name, 0.0) + time.perf_counter() - t0


def _gather(client, futures: list, what: str, log: Callable[[str], None]) -> list:
    from distributed import progress

    if futures:
        log(f"{what}: {len(futures)} task(s)")
        progress(futures, notebook=False)
    return client.gather(futures)


def _limits(client, job: BlockJob, info, blocks, dtype, log) -> tuple[float, float]:
    path = _store.private(job.out, "limits.json")
    if path.exists():
        import json

        return tuple(json.loads(path.read_text()))
    parts = _gather(
        client, [client.submit(block_statistics, job.input, b.interior, pure=False) for b in blocks], "statistics", log
    )
    norm = info.normalize
    limits = limits_from_statistics(parts, dtype, (norm.pmin, norm.pmax))
    _store.write_json_atomic(path, list(limits))
    return limits


def _merge(client, job: BlockJob, blocks, log) -> tuple[int, np.ndarray]:
    """Final instance ids: rings -> matches -> components -> one relabel task per block; (the object count,
    the final ids that occur in more than one block)."""
    plan = job.plan
    saved = [_store.load_block(job.out, f"{b.name}.split" if job.split else b.name) for b in blocks]
    pairs = {
        (k, m): matches(
            saved[k]["ring"], blocks[k].region, saved[m]["ring"], blocks[m].region, plan.shape, plan.halo // 2
        )
        for k, m in neighbours(blocks)
    }
    present = [s["present"] for s in saved]
    lookups = final_ids([int(s["count"]) for s in saved], present, pairs, [s["firsts"] for s in saved])
    futures = [client.submit(relabel_block, job.out, b, lk, pure=False) for b, lk in zip(blocks, lookups)]
    _gather(client, futures, "relabel", log)
    return int(max((int(lk.max()) for lk in lookups), default=0)), crossing_ids(lookups, present)


def _split(client, job: BlockJob, m: Measure, blocks, log) -> dict[str, float]:
    """``split_touching`` of a semantic model: the whole image's median inscribed radius per class from every
    block (:mod:`._objects`), then every block split with it (:func:`._task.split_block`)."""
    radii = class_radii(measure(client, functools.partial(_gather, client, log=log), m, blocks))
    log("split_touching: median inscribed radius " + ", ".join(f"{m.names[c]} {r:.3g} px" for c, r in radii.items()))
    _gather(client, [client.submit(split_block, job, b, radii, pure=False) for b in blocks], "split", log)
    return {m.names[c]: r for c, r in radii.items()}


def _objects(client, m: Measure, min_size: int, blocks, crossing, log) -> int:
    """The object table (:mod:`._tables`); its row count."""
    found = measure(client, functools.partial(_gather, client, log=log), m, blocks, crossing)
    rows = object_rows(found, min_size)
    write_tables(Path(m.out), rows, m)
    return len(rows)


def _identity(model: Path, input_path: Path, plan: BlockPlan, config: PredictConfig) -> dict:
    """What the output folder is of: compared by :func:`unet_tf.io.zarr.create_output` when it exists."""
    return {
        "input": str(input_path.resolve()),
        "model": str(model.resolve()),
        "model_mtime": model.stat().st_mtime,
        "block_size": plan.block_size,
        "halo": plan.halo,
        "config": {k: v for k, v in config.__dict__.items() if k not in ("resume", "scheduler")},
    }


def _create(out: Path, lazy, plan: BlockPlan, info, config: PredictConfig, identity: dict, instances: bool):
    """The OME-Zarr output (level 0 chunked like the blocks) and, for instances, the provisional ids."""
    create_output(
        out,
        plan.shape,
        image_dtype=lazy.dtype,
        mask_dtype=mask_dtype(max(info.class_values)),
        instance_dtype=np.uint32 if instances else None,
        n_probabilities=info.n_outputs if config.save_probabilities else 0,
        chunk=plan.block_size,
        pixel_size_um=config.pixel_size or lazy.pixel_size_um,
        identity=identity,
        resume=config.resume,
        class_names=dict(zip(info.class_values, info.class_names)),
    )
    if instances:
        _store.provisional(out, plan.shape, plan.block_size)


def _prepare(client, lazy, model_path: Path, input_path: Path, out: Path, config: PredictConfig, log):
    """(the job of every block, limits still unset; the ModelInfo): the plan, the precision that every block
    computes in (resolved on a worker), and the output folder created."""
    mtime = model_path.stat().st_mtime
    info, precision, why = client.submit(model_info, str(model_path), mtime, config.precision, pure=False).result()
    log(f"prediction in {precision} ({why}; resolved on a worker, used by every block)")
    config = replace(config, precision=precision)
    instances = info.target == "instances" or config.split_touching
    plan = plan_blocks(
        lazy.shape,
        tile=config.tile,
        overlap=config.overlap,
        size_divisor=info.size_divisor,
        block_size=config.block_size or DEFAULT_BLOCK_SIZE,
        halo=instance_halo(config.overlap, info.object_diameter) if instances else 0,
    )
    _create(out, lazy, plan, info, config, _identity(model_path, input_path, plan, config), instances)
    split = config.split_touching and info.target != "instances"
    job = BlockJob(str(model_path), mtime, str(input_path), str(out), plan, (0.0, 1.0), config, instances, split)
    say_not_rescaled(info, config, input_path.name, "in blocks")
    return job, info


def _measure(job: BlockJob, info, lazy, input_path: Path, what: str) -> Measure:
    """What :mod:`._objects` measures: the ``rows`` of the object table or the ``radii`` of split_touching."""
    source = "instances" if info.target == "instances" else "split" if job.split else "components"
    return Measure(
        job.out,
        job.plan.shape,
        what,
        "components" if what == "radii" else source,
        tuple(info.class_values),
        tuple(info.class_names),
        image_name(input_path),
        job.config.pixel_size or lazy.pixel_size_um,
    )


def _predict_blocks(client, job: BlockJob, blocks, block_task: Callable, log) -> list:
    """One task per block without a completion marker; the blocks predicted."""
    todo = [b for b in blocks if not _store.marker(job.out, b.name).exists()]
    if len(todo) < len(blocks):
        log(f"resume: {len(blocks) - len(todo)} of {len(blocks)} block(s) already done")
    _gather(client, [client.submit(block_task, job, b, pure=False) for b in todo], "blocks", log)
    return todo


def _after_blocks(client, job: BlockJob, info, source, blocks, stages: dict, log) -> dict[str, Any]:
    """split_touching (semantic models), the instance merge, the object table: their part of the result."""
    lazy, input_path = source
    radii = {}
    if job.split:
        with timed(stages, "split"):
            radii = _split(client, job, _measure(job, info, lazy, input_path, "radii"), blocks, log)
    objects, crossing = 0, None
    if job.instances:
        with timed(stages, "merge"):
            objects, crossing = _merge(client, job, blocks, log)
    with timed(stages, "objects"):
        measured = _measure(job, info, lazy, input_path, "rows")
        rows = _objects(client, measured, min_size_for(job.config, info)[0], blocks, crossing, log)
    return {"objects": objects, "table_rows": rows, "radii": radii}


def predict_blockwise(
    model: str | Path,
    input_path: str | Path,
    out_path: str | Path,
    config: PredictConfig = PredictConfig(),
    *,
    log: Callable[[str], None] = print,
    block_task: Callable = run_block,
    threads_per_worker: int | None = None,
    **options: Any,
) -> dict:
    """Segment one huge 2-D image block by block on a Dask cluster; equal to the whole-image prediction.

    Args:
        model: a ``.keras`` file or a bundled model's name (``nuclei``); loaded once per worker.
        input_path: the image (OME-Zarr, zarr array or TIFF: :func:`unet_tf.io.zarr.open_image`), read lazily.
        out_path: the OME-Zarr output folder (:func:`unet_tf.io.zarr.create_output`: the image, ``labels/mask``,
            ``labels/instances``, ``probabilities`` when asked, a pyramid of each), and inside it
            ``objects.csv`` and ``objects_summary.csv`` (plain CSV: the whole-image path's rows, :mod:`._tables`).
        config: PredictConfig (``**options``: its fields overriding it); ``scheduler`` (default ``local:2``),
            ``block_size`` (default 4096, at least ``tile`` and a multiple of the model's size divisor),
            ``resume`` and the tiling settings. log: where progress lines go. block_task: the function a
            block runs (tests inject faults here). threads_per_worker: of each local worker (default: cores /
            workers).

    Returns:
        dict: ``shape``, ``blocks``, ``predicted`` (by this call), ``skipped`` (done by an earlier run: their
        markers), ``objects`` (instances after the merge, else 0), ``table_rows`` (of ``objects.csv``), ``radii``
        (split_touching of a semantic model: class name -> the image's median inscribed radius, px), ``limits``,
        ``seconds``, ``stages`` (seconds of setup, statistics, blocks, split, merge, objects, pyramid).

    The image is predicted at its own scale (a note says so when the whole-image path would resize it).
    """
    from unet_tf.models.bundled import resolve_weights

    t0, stages = time.perf_counter(), {}
    config = replace(config, **options) if options else config
    model_path, input_path, out = resolve_weights(model), Path(input_path), Path(out_path)
    with (
        open_image(input_path) as lazy,
        dask_client(config.scheduler or "local:2", threads_per_worker, log=log) as client,
    ):
        with timed(stages, "setup"):
            job, info = _prepare(client, lazy, model_path, input_path, out, config, log)
        blocks = job.plan.blocks()
        with timed(stages, "statistics"):
            job = replace(job, limits=_limits(client, job, info, blocks, lazy.dtype, log))
        with timed(stages, "blocks"):
            todo = _predict_blocks(client, job, blocks, block_task, log)
        found = _after_blocks(client, job, info, (lazy, input_path), blocks, stages, log)
        with timed(stages, "pyramid"):
            finish_output(out)
    done = {"predicted": len(todo), "skipped": len(blocks) - len(todo), "limits": job.limits, "stages": stages}
    return {"shape": job.plan.shape, "blocks": len(blocks), **done, **found, "seconds": time.perf_counter() - t0}
