"""Keep TensorFlow's native start-up lines off the user's terminal.

On a machine without a GPU, importing TensorFlow and its first device query
print absl lines (``WARNING: All log messages before absl::InitializeLog()``,
``Could not find cuda drivers``, ``failed call to cuInit: ... CUDA error``)
straight from C++ to file descriptor 2, before absl logging is initialised:
``TF_CPP_MIN_LOG_LEVEL`` does not reach them (abseil/abseil-cpp#1957), and the
``tensorflow-cpu`` wheel drops only the CUDA ones. Users read them as failures.
:func:`import_tensorflow` sends fd 2 to a temporary file for exactly that
import and query, and replays what was captured if either fails.
``UNET_TF_TF_LOGS=1`` shows everything.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Capture what native code writes to fd 2 in the block; replay it if the block raises."""
    if os.environ.get("UNET_TF_TF_LOGS") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            os.write(2, captured.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow():
    """``import tensorflow`` and its first device query without the native start-up lines; the module."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with quiet_native_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()
    return tf
