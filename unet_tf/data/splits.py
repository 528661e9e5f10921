"""Which images train, validate and test: subsets, splits, hold-outs, and the resolved :class:`TrainingData`.

:func:`resolve_data` turns a :class:`~unet_tf.config.RunConfig` into the
samples of a run (the dataset layout's files, the ``data.train_size`` subset, the
validation split by image, contiguous for ordered frames, the ``data.holdout``
test images);
:meth:`TrainingData.from_arrays` does the same for images already in memory.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from unet_tf.config import RunConfig
from unet_tf.data.layouts import (
    ORDERED_LAYOUTS,
    ArraySample,
    DatasetSpec,
    Sample,
    dataset_spec,
    default_data_dir,
    instance_spec,
    list_samples,
    resolve_target,
    with_ignore_value,
)
from unet_tf.errors import UserInputError
from unet_tf.synthetic import write_tem_dataset


def choose_subset(samples: Sequence[Sample], n: int | None, seed: int = 0) -> list[Sample]:
    """``n`` samples chosen by ``seed`` (all when ``n`` is None), kept in name order."""
    samples = list(samples)
    if n is None:
        return samples
    if n < 1 or n > len(samples):
        raise UserInputError(f"`data.train_size` {n}: the dataset has {len(samples)} labelled training images")
    keep = np.random.default_rng(seed).permutation(len(samples))[:n]
    return [samples[i] for i in sorted(keep)]


def split_train_val(
    samples: Sequence[Sample], val_fraction: float = 0.2, seed: int = 0, ordered: bool = False
) -> tuple[list[Sample], list[Sample]]:
    """Split by image (never patches of one image on both sides), deterministic for ``seed``.

    ``n_val = round(val_fraction x len(samples))`` images validate (at least
    one when ``val_fraction > 0`` and two or more images exist; a single image
    is used for both, said by the caller). Samples form groups that are never
    cut at random: the pages of one stack and, when ``ordered`` (time-lapse
    frames, serial sections: :data:`~unet_tf.data.layouts.ORDERED_LAYOUTS`),
    the frames of one sequence folder. Neighbours in a group are near-duplicates,
    so validating on one while training on the next would pick ``best.keras``
    on seen data. Hence:

    * one group: validation is a contiguous block of ``n_val`` of its samples,
      placed by ``seed``;
    * several groups, ``ordered``: whole groups, as close to ``n_val`` samples
      as whole groups allow (CTC sequence 02 against 01);
    * several stacks, unordered: whole stacks until validation holds ``n_val``;
    * otherwise (unordered single images): ``n_val`` images chosen at random.
    """
    samples = list(samples)
    if not 0 <= val_fraction < 1:
        raise UserInputError(f"`data.val_fraction` {val_fraction}: must be in [0, 1)")
    if val_fraction == 0 or len(samples) < 2:
        return samples, []
    n_val = min(len(samples) - 1, max(1, round(val_fraction * len(samples))))
    keys = [sample_group(s, ordered) for s in samples]
    groups = list(dict.fromkeys(keys))
    rng = np.random.default_rng([seed, 7])
    if len(groups) == 1:
        start = int(rng.integers(0, len(samples) - n_val + 1))
        val = set(range(start, start + n_val))
    elif len(groups) == len(samples):  # every sample a group of its own
        val = set(rng.permutation(len(samples))[:n_val].tolist())
    else:
        sizes = [keys.count(g) for g in groups]
        chosen = _closest_groups(sizes, n_val, rng) if ordered else _stacks_until(sizes, n_val, rng)
        val = {i for i, key in enumerate(keys) if groups.index(key) in chosen}
    return [s for i, s in enumerate(samples) if i not in val], [s for i, s in enumerate(samples) if i in val]


def sample_group(sample, ordered: bool = False):
    """What a sample is never split from: its stack; for ``ordered`` samples of single-page files, its folder.

    Any other item (an array sample, an index) is a group of its own.
    """
    if not isinstance(sample, Sample):
        return getattr(sample, "name", sample)
    return str(sample.image.parent) if ordered and sample.page is None else str(sample.image)


def _closest_groups(sizes: Sequence[int], n_val: int, rng: np.random.Generator) -> set[int]:
    """Indices of whole groups holding as close to ``n_val`` samples as whole groups can, never all of them.

    Exact over every proper subset for up to 12 groups (ties: fewer samples,
    then ``rng`` order); with more, greedy in ``rng`` order (a group is taken
    when it brings the count closer), or the smallest group when none does.
    """
    order = rng.permutation(len(sizes)).tolist()
    if len(sizes) <= 12:
        subsets = (c for r in range(1, len(sizes)) for c in itertools.combinations(order, r))
        best = min(subsets, key=lambda c: (abs(sum(sizes[k] for k in c) - n_val), sum(sizes[k] for k in c)))
        return set(best)
    chosen: set[int] = set()
    total = 0
    for k in order:
        if abs(total + sizes[k] - n_val) < abs(total - n_val) and total + sizes[k] < sum(sizes):
            chosen.add(k)
            total += sizes[k]
    return chosen or {int(np.argmin(sizes))}


def _stacks_until(sizes: Sequence[int], n_val: int, rng: np.random.Generator) -> set[int]:
    """Indices of whole stacks, in ``rng`` order, until they hold ``n_val`` pages (unordered layouts)."""
    chosen: set[int] = set()
    for k in rng.permutation(len(sizes)).tolist():
        if sum(sizes[i] for i in chosen) >= n_val:
            break
        chosen.add(k)
    if len(chosen) == len(sizes):
        raise UserInputError("`data.val_fraction`: too large for these stacks; every stack would be validation")
    return chosen


def validation_note(samples: Sequence[Sample], val: Sequence[Sample], ordered: bool, seed: int) -> str:
    """One log line naming the validation images: runs of neighbours as ``first..last``, in ``samples`` order.

    E.g. ``validation: 20 of 50 images (40 %; ordered frames: ...; seed 0): 02/t001..02/t076``.
    """
    chosen = set(map(id, val))
    runs: list[list[str]] = []
    previous = False
    for sample in samples:
        inside = id(sample) in chosen
        if inside and previous:
            runs[-1][1] = _short_name(sample)
        elif inside:
            runs.append([_short_name(sample)] * 2)
        previous = inside
    names = [a if a == b else f"{a}..{b}" for a, b in runs]
    shown = ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8 else "")
    how = "ordered frames: contiguous blocks, whole sequences where there are several" if ordered else "at random"
    share = 100 * len(val) / max(1, len(samples))
    return f"validation: {len(val)} of {len(samples)} images ({share:.0f} %; {how}; seed {seed}): {shown}"


def _short_name(sample) -> str:
    """``folder/stem`` of a file, ``file page N`` of a stack page, the name of an array sample."""
    if not isinstance(sample, Sample):
        return str(getattr(sample, "name", sample))
    if sample.page is not None:
        return f"{sample.image.name} page {sample.page + 1}"
    return f"{sample.image.parent.name}/{sample.image.stem}"


def split_holdout(samples: Sequence[Sample], holdout: int) -> tuple[list[Sample], list[Sample]]:
    """(rest, test): the last ``holdout`` samples by name are the fixed test set."""
    samples = list(samples)
    if holdout < 0 or holdout >= len(samples):
        raise UserInputError(
            f"`data.holdout` {holdout}: the dataset has {len(samples)} labelled images; keep at least one to train"
        )
    return (samples[: len(samples) - holdout], samples[len(samples) - holdout :]) if holdout else (samples, [])


@dataclass(frozen=True)
class TrainingData:
    """Resolved inputs of a run: the classes and the labelled samples on each side.

    Samples are files (:class:`Sample`) or arrays (:class:`ArraySample`);
    ``data_dir`` is None for arrays.
    """

    spec: DatasetSpec
    train: tuple[Sample | ArraySample, ...]
    val: tuple[Sample | ArraySample, ...]
    test: tuple[Sample, ...] = ()
    data_dir: Path | None = None

    @classmethod
    def from_arrays(
        cls,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        class_values: Sequence[int],
        class_names: Sequence[str] | None = None,
        *,
        val_fraction: float = 0.2,
        seed: int = 0,
    ) -> "TrainingData":
        """Training data from images and label images in memory.

        Args:
            images: sequence of (H, W) arrays, raw pixel values (normalized
                during training with the run's percentiles).
            masks: sequence of (H, W) label images of the same sizes, holding
                ``class_values``.
            class_values: sequence of int. The label value of each class,
                background first, e.g. ``(0, 255)``.
            class_names: sequence of str or None. Default ``class_<value>``.
            val_fraction: float. Fraction of the images used for validation
                (split by image, at least one when there are two or more).
                Default 0.2.
            seed: int. Seed of the split. Default 0.

        Example:
            >>> import numpy as np
            >>> images = [np.random.rand(64, 64) for _ in range(3)]
            >>> masks = [(im > 0.5).astype(np.uint8) * 255 for im in images]
            >>> data = TrainingData.from_arrays(images, masks, (0, 255), ("background", "cell"))
            >>> len(data.train), len(data.val)
            (2, 1)
        """
        if len(images) != len(masks) or not images:
            raise UserInputError(
                f"from_arrays: {len(images)} images and {len(masks)} masks; need the same number, at least one"
            )
        spec = dataset_spec("folder", class_values, class_names)
        spec = DatasetSpec("arrays", spec.class_values, spec.class_names, spec.label_mode)
        samples = [
            ArraySample(f"array_{i:03d}", np.asarray(im), np.asarray(m)) for i, (im, m) in enumerate(zip(images, masks))
        ]
        train, val = split_train_val(samples, val_fraction, seed)
        return cls(spec, tuple(train), tuple(val or train))


def ensure_demo_data(data_dir: Path, log: Callable[[str], None] = print) -> None:
    """Fill an empty or missing ``tem`` folder with the synthetic demo set."""
    train_dir = data_dir / "train"
    if train_dir.is_dir() and any(train_dir.iterdir()):
        return
    log(f"{data_dir} holds no images: writing the synthetic TEM demo set there (12 train + 2 test, 1024 px) ...")
    t0 = time.perf_counter()
    write_tem_dataset(data_dir)
    log(f"demo data written to {data_dir} in {time.perf_counter() - t0:.0f} s")


def run_spec(cfg: RunConfig, samples: Sequence[Sample]) -> DatasetSpec:
    """The classes a run learns: the layout's, or the instance target's; with the ignore value."""
    d = cfg.data
    target = resolve_target(d.dataset, d.target, d.instance_masks)
    if d.dataset == "folder" and d.instance_masks:
        spec = DatasetSpec("folder", (0, 255), tuple(d.class_names or ("background", "object")), "instances")
    else:
        spec = dataset_spec(d.dataset, d.class_values, d.class_names, samples, d.ignore_value)
    spec = with_ignore_value(spec, d.ignore_value)
    # the plan (unet_tf.training.plan) sets an unset boundary width from the objects; 2 px until then
    width = 2 if d.boundary_width is None else d.boundary_width
    return instance_spec(spec, width) if target == "instances" else spec


def labelled_pool(
    cfg: RunConfig, log: Callable[[str], None] = print
) -> tuple[Path, DatasetSpec, list[Sample], list[Sample]]:
    """(data folder, classes, labelled training images minus ``data.holdout``, the held-out ones)."""
    d = cfg.data
    data_dir = Path(d.data_dir) if d.data_dir else default_data_dir(d.dataset)
    if d.dataset == "tem":
        ensure_demo_data(data_dir, log)
    samples = list_samples(d.dataset, data_dir, "train")
    spec = run_spec(cfg, samples)
    pool, held = split_holdout(samples, d.holdout)
    return data_dir, spec, pool, held


def resolve_data(cfg: RunConfig, log: Callable[[str], None] = print) -> TrainingData:
    """Find the dataset's files, choose the training subset and the validation split."""
    d = cfg.data
    data_dir, spec, samples, test = labelled_pool(cfg, log)
    subset = choose_subset(samples, d.train_size, cfg.train.seed)
    ordered = d.dataset in ORDERED_LAYOUTS
    train, val = split_train_val(subset, d.val_fraction, cfg.train.seed, ordered)
    if not val:
        log("note: only one training image (or `data.val_fraction` 0): validating on the training image itself")
        val = train
    else:
        log(validation_note(subset, val, ordered, cfg.train.seed))
    return TrainingData(spec, tuple(train), tuple(val), tuple(test), data_dir)
