"""Dataset layouts -> samples; one label reader for everyone; subsets and splits.

Layouts (DESIGN.md), in :mod:`.layouts`:

==========  ============================================================  =========================
name        files                                                         labels
==========  ============================================================  =========================
tem         ``train/raw_XX.tif`` + ``train/label_XX.tif``; ``test/``       0/50/100/150/200
isbi2012    ``train/image/NN.png`` + ``train/label/NN.png``; ``test/image``  0 = membrane, 255 = cell
folder      ``images/`` + ``masks/`` by stem (``_mask`` etc. allowed)     ``--class-values`` or read
ctc         ``01/tNNN.tif`` + ``01_GT/SEG/man_segNNN.tif``                 instance ids > 0 -> cell
dsb2018     ``ID/images/ID.png`` + ``ID/masks/*.png``                      masks merged -> nucleus
==========  ============================================================  =========================

:mod:`.labels` reads label files as class ids (the one reader used by
training, prediction and the ablation); :mod:`.splits` chooses subsets,
validation and test images and resolves a run's :class:`TrainingData`.
``ctc`` frames and ``isbi2012`` sections are sequences (``ORDERED_LAYOUTS``):
they validate on contiguous blocks, whole sequences where there are several;
the other layouts on images chosen at random by the seed.
"""

from unet_tf.config import DATASET_NAMES
from unet_tf.data.labels import load_image, load_pairs, read_border_weights, read_class_ids, read_instances, with_marker_margin
from unet_tf.synthetic.shapes import TEM_CLASS_NAMES, TEM_CLASS_VALUES
from unet_tf.data.layouts import ArraySample, DatasetSpec, Sample, dataset_spec, default_data_dir, default_data_root, instance_spec, list_samples, mask_key, resolve_target
from unet_tf.data.splits import TrainingData, choose_subset, ensure_demo_data, labelled_pool, resolve_data, run_spec, split_holdout, split_train_val

__all__ = [
    "DATASET_NAMES",
    "TEM_CLASS_NAMES",
    "TEM_CLASS_VALUES",
    "ArraySample",
    "DatasetSpec",
    "Sample",
    "TrainingData",
    "choose_subset",
    "dataset_spec",
    "default_data_dir",
    "default_data_root",
    "ensure_demo_data",
    "labelled_pool",
    "list_samples",
    "load_image",
    "load_pairs",
    "mask_key",
    "read_class_ids",
    "read_instances",
    "read_border_weights",
    "instance_spec",
    "resolve_target",
    "run_spec",
    "resolve_data",
    "split_holdout",
    "split_train_val",
    "with_marker_margin",
]
