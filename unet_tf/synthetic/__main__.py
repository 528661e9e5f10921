"""``python -m unet_tf.synthetic --out DIR``: see :mod:`unet_tf.cli.synthetic`."""

from ..cli.synthetic import main

raise SystemExit(main())
