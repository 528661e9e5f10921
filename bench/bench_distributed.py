"""Blockwise prediction on Dask: start-up, steady-state blocks per second, peak memory per worker, scheduler
overhead per block.

    PYTHONPATH=$PWD python bench/bench_distributed.py --size 4096 8192 --workers 1 2 [--precision float32]

A synthetic uint16 section of ``--size`` x ``--size`` px (an OME-Zarr written once per size), the default
U-Net (untrained weights: speed only), a LocalCluster of 1 and 2 workers (threads = cores / workers), blocks of
``--block-size`` (default 4096, the library's default). Each run is measured in parts:

* ``startup_s``: the cluster's start, then a warm-up on every worker (``_testing.warm_up``: TensorFlow's
  import, the model load, one batch through the network). Paid once per cluster, not per section.
* ``blocks_s``: the ``blocks`` stage of :func:`predict_blockwise` alone (its ``stages``), on warm workers:
  the steady-state rate (``blocks/s``, ``MPx/s``); ``other_s``: its other stages (statistics, merge, object
  table, pyramid), reported apart.
* ``peak_MB``: the largest ``memory`` (RSS) the scheduler reported for any worker (sampled every 0.25 s), during
  the blocks stage and over the whole call (the object table's stage holds each block's rows until gathered).
* ``overhead_s``: the ``blocks`` stage of a run on ``--noop-blocks`` tiny blocks whose task predicts nothing
  (``_testing.noop_block``: only its completion files), per block: the scheduler's own cost of a block.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def section(path: Path, size: int) -> Path:
    from unet_tf.io.zarr import write_ome_zarr

    if not path.exists():
        rng = np.random.default_rng(0)
        small = rng.integers(200, 4000, (size // 16 + 1, size // 16 + 1)).astype(np.uint16)
        write_ome_zarr(path, np.kron(small, np.ones((16, 16), np.uint16))[:size, :size], pixel_size_um=0.5)
    return path


def default_model(path: Path) -> Path:
    import keras

    from unet_tf.config import ModelConfig
    from unet_tf.models import build_model
    from unet_tf.models.file import ModelInfo, attach_info

    if not path.exists():
        keras.utils.set_random_seed(0)
        info = ModelInfo((0, 255), ("background", "foreground"))
        attach_info(build_model(ModelConfig(), 2), info).save(path)
    return path


def peak_memory(client, stop: threading.Event, samples: list) -> None:
    """Append (time, largest worker RSS) every 0.25 s until ``stop``."""
    while not stop.is_set():
        workers = client.scheduler_info().get("workers", {}).values()
        samples.append((time.perf_counter(), max((w.get("metrics", {}).get("memory", 0) for w in workers), default=0)))
        stop.wait(0.25)


def stage_peaks(samples: list, start: float, stages: dict) -> tuple[float, float]:
    """(peak MB during the blocks stage, peak MB over the whole call): the stages ran in ``stages``' order from
    ``start``, so the blocks stage is the window after setup and statistics."""
    t0 = start + stages.get("setup", 0.0) + stages.get("statistics", 0.0)
    t1 = t0 + stages["blocks"]
    inside = [m for t, m in samples if t0 <= t <= t1 + 0.25]
    return max(inside, default=float("nan")) / 2**20, max((m for _, m in samples), default=float("nan")) / 2**20


def one_run(model: Path, image: Path, out: Path, workers: int, config, task=None) -> dict:
    from dataclasses import replace

    from distributed import Client, LocalCluster

    from unet_tf.cluster import worker_environment
    from unet_tf.prediction.blockwise import predict_blockwise
    from unet_tf.prediction.blockwise._task import run_block
    from unet_tf.prediction.blockwise._testing import warm_up

    threads = max(1, (os.cpu_count() or 1) // workers)
    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=threads, env=worker_environment(threads)) as cluster:
        with Client(cluster) as client:
            client.wait_for_workers(workers)
            client.run(warm_up, str(model), model.stat().st_mtime, config.tile, config.batch_size, config.precision)
            startup = time.perf_counter() - t0
            stop, samples = threading.Event(), []
            sampler = threading.Thread(target=peak_memory, args=(client, stop, samples), daemon=True)
            sampler.start()
            config = replace(config, scheduler=cluster.scheduler_address)
            start = time.perf_counter()
            result = predict_blockwise(model, image, out, config, log=lambda s: None, block_task=task or run_block)
            stop.set()
            sampler.join()
    peak_blocks, peak = stage_peaks(samples, start, result["stages"])
    return {**result, "startup_s": startup, "peak_mb": peak, "peak_blocks_mb": peak_blocks}


def main() -> None:
    from unet_tf.config import PredictConfig
    from unet_tf.prediction.blockwise._testing import noop_block

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, nargs="+", default=[4096, 8192], help="section sides in px")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--block-size", type=int, default=4096)
    p.add_argument("--noop-blocks", type=int, default=256, help="tiny blocks of the overhead run (a square; 0: none)")
    p.add_argument("--precision", default=PredictConfig().precision, help="predict.precision (auto: as predict.py)")
    p.add_argument("--work", default=None, help="folder for the sections, model and outputs (default: a temp dir)")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_distributed_"))
    work.mkdir(parents=True, exist_ok=True)
    model = default_model(work / "unet.keras")
    from unet_tf.training.precision import resolve_predict_precision

    precision, why = resolve_predict_precision(args.precision)
    print(f"prediction in {precision} ({why})", flush=True)
    print("size workers blocks startup_s blocks_s other_s blocks/s MPx/s peak_MB/worker(blocks) (all)", flush=True)
    for size in args.size:
        image = section(work / f"section{size}.ome.zarr", size)
        for workers in args.workers:
            out = work / f"out{size}-{workers}-{time.strftime('%H%M%S')}.ome.zarr"
            run = one_run(model, image, out, workers, PredictConfig(block_size=args.block_size, precision=precision))
            busy = run["stages"]["blocks"]
            other = sum(run["stages"].values()) - busy
            print(
                f"{size} {workers} {run['blocks']} {run['startup_s']:.1f} {busy:.1f} {other:.1f} "
                f"{run['blocks'] / busy:.4f} {size**2 / 1e6 / busy:.3f} "
                f"{run['peak_blocks_mb']:.0f} {run['peak_mb']:.0f}",
                flush=True,
            )
            stages = " ".join(f"{k}={v:.1f}" for k, v in run["stages"].items())
            print(f"  stages (s): {stages}; objects.csv rows: {run['table_rows']}", flush=True)
    if not args.noop_blocks:
        return
    side = int(round(args.noop_blocks**0.5)) * 256
    image = section(work / f"section{side}.ome.zarr", side)
    print("noop: workers blocks overhead_s/block", flush=True)
    for workers in args.workers:
        out = work / f"noop-{workers}-{time.strftime('%H%M%S')}.ome.zarr"
        noop = one_run(model, image, out, workers, PredictConfig(block_size=256, tile=256), noop_block)
        print(f"noop: {workers} {noop['blocks']} {noop['stages']['blocks'] / noop['blocks']:.4f}", flush=True)


if __name__ == "__main__":
    main()
