"""``python -m unet_tf.export``: the same as ``unet-tf-export``."""

import sys

from ..cli.export import main

sys.exit(main())
