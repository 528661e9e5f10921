"""Procedural peripheral-nerve-like TEM images: the embedded `tem` demo dataset.

A transverse section of an endoneurium as seen in bright-field TEM (dense =
dark), rendered at a fixed pixel scale (object sizes are in pixels and do not
scale with the image size: a larger image is a larger field of view).

Classes (gray values of the label image):

====  ===================  ==================================================
 0    background           textured extracellular matrix (collagen), Remak
                           Schwann cytoplasm between unmyelinated axons
 50   blood_vessel         pale lumen + darker endothelial wall (with nuclear
                           bulges), sometimes a dense red blood cell inside
 100  myelinated_axon      dark myelin ring of varying thickness + pale,
                           speckled axoplasm with darker mitochondria
 150  unmyelinated_axon    small pale round profiles with a thin membrane,
                           grouped in Remak-bundle-like clusters
 200  schwann_cell         crescent nuclei hugging a myelinated fiber (or a
                           Remak bundle): textured chromatin, dark
                           heterochromatin at the rim, thin cytoplasm rim
====  ===================  ==================================================

The images are made deliberately hard for a global threshold: axoplasm,
unmyelinated axons and vessel lumen are all pale; red blood cells and
heterochromatin are as dark as myelin; Schwann nuclei overlap the background
gray levels. On top come per-image contrast jitter, an uneven illumination
(low-frequency gain field), a Gaussian PSF blur and Poisson + Gaussian noise.

The generator knows every object it draws, so beside the class label it gives
an instance label image (:func:`generate_tem_sample`): one id per myelinated
fibre, unmyelinated axon, blood vessel and Schwann nucleus, written as
``inst_XX.tif`` beside ``label_XX.tif`` (fibre counting is tested on it).

Everything is drawn from ``np.random.default_rng(seed)``: the same seed gives
the same arrays. Run ``python -m unet_tf.synthetic --out DIR`` to write a set.

Modules: :mod:`.shapes` (geometry, materials, the canvas), :mod:`.drawing`
(object renderers, layout), :mod:`.image` (texture, microscope,
:func:`generate_tem_sample`), :mod:`.dataset` (:func:`write_tem_dataset`); the
command line is :mod:`unet_tf.cli.synthetic`.
"""

from __future__ import annotations

from unet_tf.synthetic.dataset import image_seed, write_tem_dataset
from unet_tf.synthetic.image import TemSample, generate_tem_image, generate_tem_sample
from unet_tf.synthetic.shapes import TEM_CLASS_NAMES, TEM_CLASS_VALUES

__all__ = [
    "TEM_CLASS_VALUES",
    "TEM_CLASS_NAMES",
    "TemSample",
    "generate_tem_image",
    "generate_tem_sample",
    "image_seed",
    "write_tem_dataset",
]
