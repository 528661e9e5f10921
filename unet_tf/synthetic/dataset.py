"""Writing the synthetic `tem` dataset: raw images, class labels and instance ids per split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unet_tf.errors import UserInputError
from unet_tf.io.writers import write_tiff
from unet_tf.synthetic.image import as_hw, generate_tem_sample


def image_seed(seed: int, split: int, index: int) -> int:
    """Seed of image ``index`` of split 0 (train) / 1 (test), independent of
    how many images there are."""
    return int(np.random.SeedSequence([seed, split, index]).generate_state(1)[0])


def write_tem_dataset(
    root: str | Path, n_train: int = 12, n_test: int = 2, size: int = 1024, seed: int = 0, instances: bool = True
) -> dict:
    """Write the synthetic `tem` dataset under ``root``.

    Layout: ``root/train/raw_XX.tif`` + ``root/train/label_XX.tif`` (+
    ``root/train/inst_XX.tif``) and the same under ``root/test/``; XX is
    zero-padded to 2 digits (3 from 100 images of a split on). Raw images are
    uncompressed uint16, labels zlib-compressed uint8, instance ids
    zlib-compressed uint16 (see :class:`TemSample`). Image i of the train split
    uses seed ``SeedSequence([seed, 0, i])`` and of the test split
    ``SeedSequence([seed, 1, i])``, so adding images never changes the earlier
    ones. Every file is written atomically.

    Args:
        root: str or Path, the dataset folder (created).
        n_train: int, training images. Default 12.
        n_test: int, test images. Default 2.
        size: int or (height, width), image size; at least 16. Default 1024.
        seed: int, dataset seed. Default 0.
        instances: bool, also write the ``inst_XX.tif`` files. Default True.

    Returns:
        ``{"root", "n_train", "n_test", "size": [H, W], "seed", "files"}``.
    """
    if n_train < 0 or n_test < 0:
        raise UserInputError(f"n_train/n_test must be >= 0, got {n_train}/{n_test}")
    hw = as_hw(size)
    root = Path(root)
    files = []
    for split_id, (split, count) in enumerate((("train", n_train), ("test", n_test))):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        digits = 3 if count >= 100 else 2
        for i in range(count):
            sample = generate_tem_sample(hw, image_seed(seed, split_id, i))
            stem = f"{i:0{digits}d}"
            files.append(write_tiff(folder / f"raw_{stem}.tif", sample.image, compression=None))
            files.append(write_tiff(folder / f"label_{stem}.tif", sample.label))
            if instances:
                files.append(write_tiff(folder / f"inst_{stem}.tif", sample.instances))
    return {
        "root": str(root),
        "n_train": n_train,
        "n_test": n_test,
        "size": list(hw),
        "seed": seed,
        "files": len(files),
    }
