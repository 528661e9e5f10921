"""An instance model's foreground threshold, calibrated on its validation images after training.

StarDist's idea (``optimize_thresholds`` after training, the values stored with the model): the
probability at which a pixel counts as object is chosen on the run's own validation images, not fixed at
0.5. A network trained with the recall-leaning Tversky loss (beta 0.7) and separation-border weights
predicts interior + boundary above 0.5 a little outside the drawn objects and in faint blobs: on the 30
validation images of the bundled ``nuclei`` recipe (1009 nuclei at the model's scale) AP@0.5 was 0.693 at
0.5 and 0.741 at 0.9, mean AP 0.422 -> 0.516 (BENCHMARKS.md, Round 11).

:func:`choose_foreground_threshold` scores the seeded watershed
(:func:`unet_tf.objects.instances.instances_from_probabilities`) at every threshold of
:data:`FOREGROUND_GRID` on the validation probabilities and keeps the best pooled AP@0.5 (ties: the best
mean AP 0.5:0.95, then the threshold nearest 0.5); with fewer than :data:`MIN_OBJECTS` validation objects
it keeps none (the model then predicts at 0.5). :func:`calibrate_model_file` predicts the validation
images with the saved model (at the model's scale, as prediction will) and writes the threshold into the
file's ``ModelInfo.foreground_threshold``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from unet_tf.evaluation.matching import InstanceEvaluator
from unet_tf.objects.instances import instances_from_probabilities

FOREGROUND_GRID = tuple(round(0.3 + 0.05 * i, 2) for i in range(14))  # 0.3 .. 0.95
MIN_OBJECTS = 20  # fewer validation objects than this: no calibration (AP on a handful of objects is noise)
DEFAULT_FOREGROUND = 0.5


@dataclass(frozen=True)
class Calibration:
    """What the calibration chose (``threshold`` None: not calibrated, ``reason`` says why) and the scores
    ``{threshold: (AP@0.5, mean AP)}`` it chose from, pooled over ``objects`` validation objects."""

    threshold: float | None
    objects: int
    scores: dict[float, tuple[float, float]]
    reason: str = ""

    def summary(self) -> str:
        """One line for the run log."""
        if self.threshold is None:
            return f"foreground threshold not calibrated ({self.reason}): prediction uses {DEFAULT_FOREGROUND}"
        at = self.scores[self.threshold]
        base = self.scores.get(DEFAULT_FOREGROUND)
        before = f" (at {DEFAULT_FOREGROUND}: {base[0]:.3f} / {base[1]:.3f})" if base else ""
        return (
            f"foreground threshold {self.threshold:g}, calibrated on {self.objects} validation objects: "
            f"AP@0.5 / mean AP {at[0]:.3f} / {at[1]:.3f}{before}"
        )


def choose_foreground_threshold(
    probabilities: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    ignores: Sequence[np.ndarray | None] | None = None,
    *,
    interior_threshold: float = 0.5,
    min_size: int = 0,
    grid: Sequence[float] = FOREGROUND_GRID,
) -> Calibration:
    """The foreground threshold of ``grid`` with the best pooled AP@0.5 on these images.

    Args:
        probabilities: float (H, W, 3) background / interior / boundary probabilities per image.
        truths: int (H, W) instance labels (0 background) of the same images.
        ignores: bool (H, W) masks of pixels that count nowhere (or None per image / for all).
        interior_threshold: the seeds' threshold prediction uses. Default 0.5.
        min_size: the smallest object prediction keeps, px. Default 0.
        grid: the thresholds tried. Default :data:`FOREGROUND_GRID`.
    """
    ignores = list(ignores) if ignores is not None else [None] * len(truths)
    objects = sum(len(np.unique(truth[truth > 0])) for truth in truths)
    if objects < MIN_OBJECTS:
        return Calibration(None, objects, {}, f"{objects} validation objects, fewer than {MIN_OBJECTS}")
    scores = {}
    for threshold in grid:
        evaluator = InstanceEvaluator()
        for k, (prob, truth, ignore) in enumerate(zip(probabilities, truths, ignores)):
            labels = instances_from_probabilities(
                prob, interior_threshold=interior_threshold, foreground_threshold=threshold, min_size=min_size
            )
            evaluator.add(str(k), truth, labels, ignore)
        pooled = evaluator.rows()[-1]
        scores[float(threshold)] = (float(pooled["ap50"]), float(pooled["mean_ap"]))
    best = max(scores, key=lambda t: (round(scores[t][0], 4), round(scores[t][1], 4), -abs(t - DEFAULT_FOREGROUND)))
    return Calibration(best, objects, scores)


def calibrate_model_file(
    path: str | Path,
    samples: Sequence,
    spec,
    ignores: Sequence[np.ndarray | None] | None = None,
    log: Callable[[str], None] = print,
) -> Calibration:
    """Calibrate the instance model saved at ``path`` (a run's ``best.keras``) on labelled ``samples``.

    Each sample (at the model's object scale, as training rescaled it) is predicted with the saved model as
    :func:`unet_tf.predict_image` does by default (no test-time augmentation), the threshold is chosen by
    :func:`choose_foreground_threshold` and written into the file's ``ModelInfo.foreground_threshold``
    (weights, precision and optimizer state unchanged); the scores go to ``calibration.csv`` beside it.
    A semantic model is left as it is.
    """
    from unet_tf.data.labels import read_instances, read_raw_image
    from unet_tf.models.file import load_model_and_info, replace_info
    from unet_tf.prediction.image import predict_image

    path = Path(path)
    model, info = load_model_and_info(path)
    if info.target != "instances":
        return Calibration(None, 0, {}, "not an instance model")
    probabilities, truths = [], []
    for sample in samples:
        image = read_raw_image(sample)[0]
        result = predict_image(model, image, diameter=info.object_diameter, name=getattr(sample, "name", "image"))
        probabilities.append(result.probabilities)
        truths.append(read_instances(sample, spec))
    calibration = choose_foreground_threshold(probabilities, truths, ignores, min_size=info.min_size or 0)
    if calibration.threshold is not None:
        replace_info(path, foreground_threshold=calibration.threshold)
        _write_scores(path.parent / "calibration.csv", calibration)
    log(calibration.summary())
    return calibration


def inherit_threshold(path: str | Path, parent: str | Path, log: Callable[[str], None] = print) -> float | None:
    """Write the ``train.init_from`` parent's calibrated threshold into the instance model at ``path`` (a
    fine-tuned run that had too few validation objects to calibrate its own); None when the parent holds none."""
    from unet_tf.models.file import replace_info
    from unet_tf.training.finetune import parent_model_config  # the parent's info, already read by the run

    threshold = parent_model_config(parent)[1].foreground_threshold
    if threshold is None:
        return None
    replace_info(path, foreground_threshold=threshold)
    log(f"foreground threshold {threshold:g}: the parent's ({parent}), kept as this run could not calibrate one")
    return threshold


def _write_scores(path: Path, calibration: Calibration) -> None:
    from unet_tf.io.writers import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["foreground_threshold", "ap50", "mean_ap", "chosen"])
        for threshold, (ap50, mean_ap) in calibration.scores.items():
            writer.writerow([threshold, round(ap50, 4), round(mean_ap, 4), int(threshold == calibration.threshold)])


__all__ = [
    "Calibration",
    "FOREGROUND_GRID",
    "MIN_OBJECTS",
    "choose_foreground_threshold",
    "calibrate_model_file",
    "inherit_threshold",
]
