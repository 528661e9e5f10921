"""Gray vs colour input on the brightfield / stained-tissue images of DSB2018 stage-1 train (issue 24, item 3).

How well does one input plane separate nucleus pixels from the rest, per image? The
area under the ROC curve (AUC, polarity-free: max(AUC, 1 - AUC)) of nucleus vs
background pixels for:

- ``luminance``: what unet_tf reads today (0.299 R + 0.587 G + 0.114 B);
- ``hematoxylin``: the H channel of scikit-image's ``rgb2hed`` colour deconvolution (a stain-aware
  conversion made for H&E / H-DAB);
- ``principal component``: the projection on the image's first principal component of R, G, B (needs no
  labels, so prediction can do it too; a gray image's is its gray);
- ``best channel``: the best of R, G, B for that image (chosen on the image: optimistic);
- ``fisher rgb``: the Fisher discriminant direction of R, G, B fitted on that image's own labels (an upper
  bound for any per-pixel linear mix of the three channels, which is what a 3-channel first layer can add).

If luminance is within a few thousandths of the Fisher bound, colour carries little per-pixel contrast
that gray loses. (Texture and context are not measured here; the network sees those in either case.)

    python bench/bench_colour.py [--data-dir ../shared/data/dsb2018_stage1_train]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np
import tifffile
from scipy.stats import rankdata
from skimage.color import rgb2hed

SAMPLE = 20000


def auc(values: np.ndarray, positive: np.ndarray) -> float:
    """Polarity-free ROC AUC of ``values`` for ``positive`` (Mann-Whitney U from ranks)."""
    ranks = rankdata(values)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    a = u / (n_pos * n_neg)
    return float(max(a, 1 - a))


def fisher(rgb: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Projection of ``rgb`` (N, 3) on the Fisher direction between the two pixel classes."""
    a, b = rgb[positive], rgb[~positive]
    within = np.cov(a.T) + np.cov(b.T) + 1e-6 * np.eye(3)
    return rgb @ np.linalg.solve(within, a.mean(0) - b.mean(0))


def planes(rgb: np.ndarray, positive: np.ndarray) -> dict[str, np.ndarray]:
    luminance = rgb @ np.array([0.299, 0.587, 0.114])
    hematoxylin = rgb2hed(np.clip(rgb / 255.0, 0, 1).reshape(-1, 1, 3)).reshape(-1, 3)[:, 0]
    centred = rgb - rgb.mean(0)
    principal = centred @ np.linalg.eigh(np.cov(centred.T))[1][:, -1]  # first principal component, no labels
    best = max((rgb[:, c] for c in range(3)), key=lambda v: auc(v, positive))
    return {
        "luminance": luminance,
        "principal component": principal,
        "hematoxylin": hematoxylin,
        "best channel": best,
        "fisher rgb": fisher(rgb, positive),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(os.environ.get("UNET_TF_DATA", "../shared/data")) / "dsb2018_stage1_train"
    p.add_argument("--data-dir", type=Path, default=default)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    scores: dict[str, list[float]] = {}
    colour_images = 0
    for mask_path in sorted((args.data_dir / "masks").glob("*.tif")):
        image = cv2.imread(str(args.data_dir / "images" / f"{mask_path.stem}.png"), cv2.IMREAD_UNCHANGED)
        rgb = image[..., 2::-1].reshape(-1, 3).astype(np.float64)  # OpenCV reads BGR(A)
        if np.median(rgb.mean(1)) <= 100:  # fluorescence: dark background, gray
            continue
        colour_images += bool(np.abs(rgb[:, 0] - rgb[:, 1]).mean() + np.abs(rgb[:, 1] - rgb[:, 2]).mean() > 1)
        positive = tifffile.imread(mask_path).reshape(-1) > 0
        pick = rng.choice(len(rgb), min(SAMPLE, len(rgb)), replace=False)
        for name, values in planes(rgb[pick], positive[pick]).items():
            scores.setdefault(name, []).append(auc(values, positive[pick]))
    n = len(scores["luminance"])
    print(f"{n} brightfield / stained images ({colour_images} in colour); per-image AUC nucleus vs background")
    print("| input plane | mean AUC | median | worst image | images where it beats luminance by > 0.01 |")
    print("|---|---|---|---|---|")
    lum = np.array(scores["luminance"])
    for name, values in scores.items():
        v = np.array(values)
        print(f"| {name} | {v.mean():.4f} | {np.median(v):.4f} | {v.min():.4f} | {int(np.sum(v > lum + 0.01))} |")


if __name__ == "__main__":
    main()
