"""Labelled files -> arrays -> ``tf.data``: layouts, labels, splits, normalization, targets, augmentation.

Layouts (DESIGN.md), in :mod:`.layouts`:

==========  ============================================================  =========================
name        files                                                         labels
==========  ============================================================  =========================
tem         ``train/raw_XX.tif`` + ``train/label_XX.tif``; ``test/``       0/50/100/150/200
isbi2012    ``train/image/NN.png`` + ``train/label/NN.png``; ``test/image``  0 = membrane, 255 = cell
folder      ``images/`` + ``masks/`` by stem (``_mask`` etc. allowed)     `data.class_values` or read
ctc         ``01/tNNN.tif`` + ``01_GT/SEG/man_segNNN.tif``                 instance ids > 0 -> cell
dsb2018     ``ID/images/ID.png`` + ``ID/masks/*.png``                      masks merged -> nucleus
==========  ============================================================  =========================

:mod:`.labels` reads label files as class ids (the one reader used by
training, prediction and the ablation); :mod:`.splits` chooses subsets,
validation and test images and resolves a run's :class:`TrainingData`.
``ctc`` frames and ``isbi2012`` sections are sequences (``ORDERED_LAYOUTS``):
they validate on contiguous blocks, whole sequences where there are several;
the other layouts on images chosen at random by the seed.

Then, in the order the data flows: :mod:`.normalize` (the percentile stretch, also used by prediction),
:mod:`.targets` (instance labels -> 3-class targets, separation-border weights, ignore masks),
:mod:`.sampling` (the NumPy side of the pipeline: checks, rare-class candidates, validation tiles),
:mod:`.augment` (on-graph augmentation from a seed) and :mod:`.pipeline` (the ``tf.data.Dataset`` of batches).
"""
