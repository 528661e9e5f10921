"""Blockwise prediction on Dask: blocks per second, peak memory per worker, scheduler overhead per block.

    PYTHONPATH=$PWD python bench/bench_distributed.py --size 4096 --workers 1 2

A synthetic uint16 section of ``--size`` x ``--size`` px (an OME-Zarr written once), the default U-Net
(untrained weights: speed only), a LocalCluster of 1 and 2 workers (threads = cores / workers). Peak memory per
worker: the largest ``memory`` the scheduler reported for any worker (sampled every 0.25 s). Overhead: the same
run with a block task that predicts nothing (``_testing.noop_block``), per block.
"""

from __future__ import annotations

import argparse
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


def peak_memory(client, stop: threading.Event, peaks: dict) -> None:
    while not stop.is_set():
        for address, worker in client.scheduler_info().get("workers", {}).items():
            peaks[address] = max(peaks.get(address, 0), worker.get("metrics", {}).get("memory", 0))
        stop.wait(0.25)


def one_run(model: Path, image: Path, out: Path, workers: int, block_size: int, task=None) -> dict:
    import os

    from distributed import Client, LocalCluster

    from unet_tf.cluster import worker_environment
    from unet_tf.config import PredictConfig
    from unet_tf.prediction.blockwise import predict_blockwise
    from unet_tf.prediction.blockwise._task import run_block

    threads = max(1, (os.cpu_count() or 1) // workers)
    with LocalCluster(n_workers=workers, threads_per_worker=threads, env=worker_environment(threads)) as cluster:
        with Client(cluster) as client:
            stop, peaks = threading.Event(), {}
            sampler = threading.Thread(target=peak_memory, args=(client, stop, peaks), daemon=True)
            sampler.start()
            config = PredictConfig(scheduler=cluster.scheduler_address, block_size=block_size)
            result = predict_blockwise(model, image, out, config, log=lambda s: None, block_task=task or run_block)
            stop.set()
            sampler.join()
    return {**result, "peak_mb": max(peaks.values()) / 2**20 if peaks else float("nan")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=30000, help="section side in px")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--block-size", type=int, default=2048)
    p.add_argument("--work", default=None, help="folder for the section, model and outputs (default: a temp dir)")
    args = p.parse_args()
    from unet_tf.prediction.blockwise._testing import noop_block

    work = Path(args.work or tempfile.mkdtemp(prefix="bench_distributed_"))
    work.mkdir(parents=True, exist_ok=True)
    image, model = section(work / f"section{args.size}.ome.zarr", args.size), default_model(work / "unet.keras")
    print("size workers blocks seconds blocks/s MPx/s peak_MB/worker overhead_s/block")
    for workers in args.workers:
        stamp = time.strftime("%H%M%S")
        run = one_run(model, image, work / f"out{args.size}-{workers}-{stamp}.ome.zarr", workers, args.block_size)
        noop = one_run(
            model, image, work / f"noop{args.size}-{workers}-{stamp}.ome.zarr", workers, args.block_size, noop_block
        )
        mpx = args.size**2 / 1e6
        print(
            f"{args.size} {workers} {run['blocks']} {run['seconds']:.1f} {run['blocks'] / run['seconds']:.3f} "
            f"{mpx / run['seconds']:.3f} {run['peak_mb']:.0f} {noop['seconds'] / noop['blocks']:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
