"""Where each epoch's time goes in a training run (issue 16): one Markdown row per epoch.

    python bench/bench_epochs.py -- --dataset tem --epochs 5 --out runs/bench-epochs
    ONEDNN_MAX_CPU_ISA=AVX2 python bench/bench_epochs.py -- --epochs 5 --out runs/bench-epochs-avx2
    python bench/bench_epochs.py --repo ../unet_tf-before -- --epochs 5 --out runs/before   # another checkout

Flags after ``--`` are train.py's. The run goes through ``unet_tf.train`` in
this process with a timing callback. Columns, in seconds: the whole epoch; the
wait from the epoch's start to its first training step (the first batch of
the epoch) and the CPU time the process used meanwhile (a wait with little CPU
is idle, not work); the training steps; the median step; validation; and
what follows validation (checkpoints, logs). The first epoch includes tracing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ("epoch", "total", "wait for 1st batch", "CPU in that wait", "steps", "median step", "validation", "after")


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str]]:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, default=REPO, help="checkout whose unet_tf to import (default: this one)")
    return p.parse_args(argv[:split]), argv[split + 1 :]


def epoch_timer():
    """A Keras callback that prints one table row per epoch (imports Keras: call after unet_tf)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.cpu_start, self.steps, self.first = time.perf_counter(), time.process_time(), [], None

        def on_train_batch_begin(self, batch, logs=None):
            self.step_start = time.perf_counter()
            if self.first is None:
                self.first, self.first_cpu = self.step_start, time.process_time() - self.cpu_start

        def on_train_batch_end(self, batch, logs=None):
            self.steps.append(time.perf_counter() - self.step_start)

        def on_test_begin(self, logs=None):
            self.val_start = time.perf_counter()

        def on_test_end(self, logs=None):
            self.val_end = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            cells = (now - self.start, self.first - self.start, self.first_cpu, sum(self.steps))
            cells += (statistics.median(self.steps), self.val_end - self.val_start, now - self.val_end)
            print(f"| {epoch + 1} | " + " | ".join(f"{c:.2f}" for c in cells) + " |", flush=True)

    return EpochTimer()


def main(argv=None) -> None:
    args, train_flags = parse_args(argv)
    sys.path.insert(0, str(args.repo.resolve()))
    import unet_tf  # first: it chooses TensorFlow's oneDNN kernels before TensorFlow loads
    from unet_tf.cli.train import build_parser, config_from_args

    cfg = config_from_args(build_parser().parse_args(train_flags))
    print(f"unet_tf from {Path(unet_tf.__file__).parent}; train.py flags: {' '.join(train_flags) or '(none)'}")
    print("| " + " | ".join(COLUMNS) + " |\n|" + "--:|" * len(COLUMNS), flush=True)
    unet_tf.train(cfg, log=lambda line: None, verbose=0, extra_callbacks=[epoch_timer()])


if __name__ == "__main__":
    main()
