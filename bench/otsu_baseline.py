"""Global-Otsu baseline on the synthetic `tem` dataset, and generation time.

    python bench/otsu_baseline.py                      # default 12 + 2 images, 1024 px, in memory
    python bench/otsu_baseline.py --data-dir data/tem  # an existing tem folder instead

Prints, as Markdown, the per-class Dice of the most generous single global
threshold (see ``unet_tf.synthetic.otsu_baseline``) on the test images and on
all images, and the time to generate one 1024 x 1024 image. Saves a preview
(image | label) PNG.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from unet_tf.synthetic import (  # noqa: E402
    TEM_CLASS_NAMES, TEM_CLASS_VALUES, _image_seed, generate_tem_image, otsu_baseline)


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
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals)
                     + f" | {np.nanmean(vals):.3f} |")
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
    ax[1].set_title("label: " + ", ".join(f"{v} {n}" for v, n in zip(TEM_CLASS_VALUES, TEM_CLASS_NAMES)),
                    fontsize=8)
    for a in ax:
        a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="existing tem folder (train/, test/); default: generate in memory")
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
        train = tuple(map(list, zip(*(generate_tem_image(args.size, _image_seed(args.seed, 0, i))
                                      for i in range(args.n_train)))))
        test = tuple(map(list, zip(*(generate_tem_image(args.size, _image_seed(args.seed, 1, i))
                                     for i in range(args.n_test)))))
        source = f"generated: {args.n_train} train + {args.n_test} test, {args.size} px, seed {args.seed}"

    rows = {f"test ({len(test[0])})": otsu_baseline(*test),
            f"all ({len(train[0]) + len(test[0])})": otsu_baseline(train[0] + test[0], train[1] + test[1])}
    print(f"Global Otsu baseline, Dice per class (best side per class and image); {source}\n")
    print(_table(rows))

    times = []
    for k in range(3):
        t0 = time.perf_counter()
        generate_tem_image(1024, seed=1000 + k)
        times.append(time.perf_counter() - t0)
    print(f"\ngenerate_tem_image(1024): median {np.median(times):.2f} s over 3 "
          f"(min {min(times):.2f} s)")

    fractions = np.mean([[np.mean(lab == v) for v in TEM_CLASS_VALUES] for lab in train[1] + test[1]], axis=0)
    print("class fractions: " + ", ".join(f"{n} {f:.3f}" for n, f in zip(TEM_CLASS_NAMES, fractions)))

    _save_preview(test[0][0], test[1][0], args.preview)
    print(f"preview: {args.preview}")


if __name__ == "__main__":
    main()
