"""Global-Otsu baseline on the synthetic `tem` dataset, and generation time.

    python bench/otsu_baseline.py                      # default 12 + 2 images, 1024 px, in memory
    python bench/otsu_baseline.py --data-dir data/tem  # an existing tem folder instead

Prints, as Markdown, the per-class Dice of the most generous single global
threshold (:func:`otsu_baseline`) on the test images and on all images, and the
time to generate one 1024 x 1024 image. Saves a preview (image | label) PNG.

The baseline itself (:func:`otsu_threshold`, :func:`dice_score`,
:func:`otsu_baseline`) lives here, not in the package: it is a reference to beat,
not something a user runs (tests/synthetic/test_synthetic.py imports it from here).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from unet_tf.synthetic import TEM_CLASS_NAMES, TEM_CLASS_VALUES, generate_tem_image, image_seed  # noqa: E402

# === The naive baseline: one global Otsu threshold per image ===


def otsu_threshold(image: np.ndarray, bins: int = 1024) -> float:
    """Otsu's threshold of ``image`` (any shape, any numeric dtype).

    Histogram of ``bins`` equal bins over [min, max]; picks the split that
    maximizes the between-class variance w0 * w1 * (mu0 - mu1)^2; where the
    maximum is a plateau (empty bins between two modes) it takes the plateau's
    middle. Returns the threshold t such that the dark class is
    ``image < t`` (t is the lower edge of the first bright bin). A constant
    image returns its value (everything is bright).
    """
    x = np.asarray(image, dtype=np.float64).ravel()
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(x, bins=bins, range=(lo, hi))
    p = hist / hist.sum()
    centers = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(p)[:-1]  # dark class = bins 0..k, k = 0..bins-2
    mu0_sum = np.cumsum(p * centers)[:-1]
    mu_t = float(np.sum(p * centers))
    w1 = 1.0 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu_t * w0 - mu0_sum) ** 2 / (w0 * w1)
    between[(w0 <= 0) | (w1 <= 0)] = -1.0
    best = int(np.argmax(between))
    on_top = between >= between[best] * (1.0 - 1e-9)
    off = np.flatnonzero(~on_top)  # the plateau is the run of on_top around best
    lo_k = int(off[off < best].max()) + 1 if np.any(off < best) else 0
    hi_k = int(off[off > best].min()) - 1 if np.any(off > best) else len(on_top) - 1
    return float(edges[(lo_k + hi_k) // 2 + 1])


def dice_score(pred: np.ndarray, target: np.ndarray) -> float:
    """Dice 2|P & T| / (|P| + |T|) of two boolean arrays; 1.0 if both empty."""
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    denom = int(pred.sum()) + int(target.sum())
    return 1.0 if denom == 0 else 2.0 * int(np.logical_and(pred, target).sum()) / denom


def otsu_baseline(
    images: Iterable[np.ndarray],
    labels: Iterable[np.ndarray],
    class_values: Sequence[int] = TEM_CLASS_VALUES,
    class_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Per-class Dice of the most generous single global threshold.

    For each image: t = :func:`otsu_threshold` (1024 bins), dark = image < t,
    bright = the rest. For each class c present in that image's label, the
    score is max(Dice(dark, label == c), Dice(bright, label == c)), i.e. the
    better side is granted to every class separately (an upper bound on what
    one global threshold can do). Scores are averaged over the images that
    contain c; a class absent from every image gets NaN.

    Args:
        images, labels: equally long iterables of 2-D arrays of equal shapes.
        class_values: label values, one per class.
        class_names: names for the result keys; default :data:`TEM_CLASS_NAMES`
            for the TEM values, else ``"class_<value>"``.

    Returns:
        ``{class_name: mean Dice}`` in ``class_values`` order.
    """
    values = tuple(int(v) for v in class_values)
    if class_names is None:
        class_names = TEM_CLASS_NAMES if values == TEM_CLASS_VALUES else tuple(f"class_{v}" for v in values)
    scores: list[list[float]] = [[] for _ in values]
    for image, label in zip(images, labels, strict=True):
        image, label = np.asarray(image), np.asarray(label)
        if image.shape != label.shape:
            raise ValueError(f"image shape {image.shape} != label shape {label.shape}")
        dark = image < otsu_threshold(image)
        for i, v in enumerate(values):
            target = label == v
            if target.any():
                scores[i].append(max(dice_score(dark, target), dice_score(~dark, target)))
    return {name: (float(np.mean(s)) if s else float("nan")) for name, s in zip(class_names, scores)}


# === The benchmark ===


def _load_folder(data_dir: Path, split: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(images, labels) of ``data_dir/split/raw_*.tif`` + ``label_*.tif``."""
    import tifffile

    images, labels = [], []
    for raw in sorted((data_dir / split).glob("raw_*.tif*")):
        lab = raw.with_name(raw.name.replace("raw_", "label_", 1))
        images.append(tifffile.imread(raw))
        labels.append(tifffile.imread(lab))
    return images, labels


def _table(rows: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per set, one column per class plus the mean."""
    head = "| images | " + " | ".join(TEM_CLASS_NAMES) + " | mean |"
    lines = [head, "|" + "---|" * (len(TEM_CLASS_NAMES) + 2)]
    for name, scores in rows.items():
        vals = [scores[c] for c in TEM_CLASS_NAMES]
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {np.nanmean(vals):.3f} |")
    return "\n".join(lines)


def _save_preview(image: np.ndarray, label: np.ndarray, path: Path) -> None:
    """Image (percentile-stretched gray) and label (one color per class) side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    colors = ["#2b2b2b", "#e4572e", "#f3c13a", "#4c9f70", "#5b8def"]
    index = np.searchsorted(TEM_CLASS_VALUES, label)
    fig, ax = plt.subplots(1, 2, figsize=(14, 7.4))
    lo, hi = np.percentile(image, [0.5, 99.5])
    ax[0].imshow(image, cmap="gray", vmin=lo, vmax=hi)
    ax[0].set_title("synthetic TEM (uint16)")
    ax[1].imshow(index, cmap=ListedColormap(colors), vmin=0, vmax=4, interpolation="nearest")
    ax[1].set_title("label: " + ", ".join(f"{v} {n}" for v, n in zip(TEM_CLASS_VALUES, TEM_CLASS_NAMES)), fontsize=8)
    for a in ax:
        a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="existing tem folder (train/, test/); default: generate in memory"
    )
    parser.add_argument("--n-train", type=int, default=12)
    parser.add_argument("--n-test", type=int, default=2)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preview", type=Path, default=Path("/tmp/synthetic_preview.png"))
    args = parser.parse_args()

    if args.data_dir is not None:
        train = _load_folder(args.data_dir, "train")
        test = _load_folder(args.data_dir, "test")
        source = str(args.data_dir)
    else:  # the same seeds as write_tem_dataset, without touching the disk
        train = tuple(
            map(list, zip(*(generate_tem_image(args.size, image_seed(args.seed, 0, i)) for i in range(args.n_train))))
        )
        test = tuple(
            map(list, zip(*(generate_tem_image(args.size, image_seed(args.seed, 1, i)) for i in range(args.n_test))))
        )
        source = f"generated: {args.n_train} train + {args.n_test} test, {args.size} px, seed {args.seed}"

    rows = {
        f"test ({len(test[0])})": otsu_baseline(*test),
        f"all ({len(train[0]) + len(test[0])})": otsu_baseline(train[0] + test[0], train[1] + test[1]),
    }
    print(f"Global Otsu baseline, Dice per class (best side per class and image); {source}\n")
    print(_table(rows))

    times = []
    for k in range(3):
        t0 = time.perf_counter()
        generate_tem_image(1024, seed=1000 + k)
        times.append(time.perf_counter() - t0)
    print(f"\ngenerate_tem_image(1024): median {np.median(times):.2f} s over 3 (min {min(times):.2f} s)")

    fractions = np.mean([[np.mean(lab == v) for v in TEM_CLASS_VALUES] for lab in train[1] + test[1]], axis=0)
    print("class fractions: " + ", ".join(f"{n} {f:.3f}" for n, f in zip(TEM_CLASS_NAMES, fractions)))

    _save_preview(test[0][0], test[1][0], args.preview)
    print(f"preview: {args.preview}")


if __name__ == "__main__":
    main()
