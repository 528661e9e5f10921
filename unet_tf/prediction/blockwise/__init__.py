"""Blockwise prediction of huge images on a Dask cluster (:func:`predict_blockwise`).

Blocks of the whole-image tile plan (``_plan``), one block through the network
(``_predict``), instance ids merged across block faces (``_merge``), what a
worker runs (``_task``), the output folder, markers and resume (``_store``),
the orchestration (``_run``).
"""

from unet_tf.prediction.blockwise._run import predict_blockwise

__all__ = ["predict_blockwise"]
