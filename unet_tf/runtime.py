"""The process a run lives in: the CPU's flags, TensorFlow's oneDNN kernels, its native log lines.

This module imports no TensorFlow (``unet_tf/__init__.py`` imports it first).

**CPU kernels.** TensorFlow's oneDNN CPU kernels on every x86-64 Linux CPU with AVX2, not only the newest.
TensorFlow turns its oneDNN kernels on by default only where the CPU has
avx512_vnni, avx512_bf16, avx_vnni or AMX (``DefaultOneDnnPolicy`` in
``tensorflow/core/util/port.cc``). On every other CPU (AVX2-only EPYCs and
Xeons, most laptops) it runs its Eigen kernels, built for AVX, which train our
U-Net 1.7x slower than oneDNN restricted to AVX2 (BENCHMARKS.md, "Round 4"), and
slower than PyTorch. So unet_tf sets ``TF_ENABLE_ONEDNN_OPTS=1`` before
TensorFlow loads, on x86-64 Linux with AVX2, unless the user has set it (either
way: ``0`` keeps Eigen).

**Native logs.** Keep TensorFlow's native start-up lines off the user's terminal.
On a machine without a GPU, importing TensorFlow and its first device query
print absl lines (``WARNING: All log messages before absl::InitializeLog()``,
``Could not find cuda drivers``, ``failed call to cuInit: ... CUDA error``)
straight from C++ to file descriptor 2, before absl logging is initialised:
``TF_CPP_MIN_LOG_LEVEL`` does not reach them (abseil/abseil-cpp#1957), and the
``tensorflow-cpu`` wheel drops only the CUDA ones. Users read them as failures.
:func:`import_tensorflow` sends fd 2 to a temporary file for exactly that
import and query, and replays what was captured if either fails.

Later, TensorFlow logs from C++ while it trains and predicts, e.g. at the first
epoch on some Intel CPUs ``E0000 00:00:1700000000.123456 12 util.cc:131]
oneDNN supports DT_INT32 only on platforms with AVX-512. Falling back to the
default Eigen-based implementation``. :func:`hide_native_lines` (around
:func:`unet_tf.train` and :func:`unet_tf.predict_files`) filters fd 2 line by
line: lines in absl/glog format (``[IWEF]mmdd ...``) or TensorFlow's older one
(``2024-01-31 12:00:00.123456: W ...``) are held back, everything else (our
messages, Python warnings, tracebacks, progress bars) passes through in order.
Held-back lines are replayed if the block fails.

``UNET_TF_TF_LOGS=1`` shows everything.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import platform
import re
import select
import sys
import tempfile
import threading
from collections.abc import MutableMapping
from pathlib import Path
from typing import Iterator

from unet_tf.errors import Notes, UserInputError, note_run


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (empty where ``/proc/cpuinfo`` cannot be read, e.g. not Linux)."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


ENV = "TF_ENABLE_ONEDNN_OPTS"


# where TensorFlow's own default is already "on"
TF_DEFAULT_ON_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


_set_by_us = False


def should_enable(environ: MutableMapping[str, str], flags: set[str], system: str, machine: str) -> bool:
    """True where TensorFlow would leave oneDNN off but it helps: x86-64 Linux, AVX2, no newer
    flag that turns it on anyway, and no choice of the user's in ``TF_ENABLE_ONEDNN_OPTS``."""
    if ENV in environ or system != "Linux" or machine.lower() not in ("x86_64", "amd64"):
        return False
    return "avx2" in flags and not any(f in flags for f in TF_DEFAULT_ON_FLAGS)


def prefer_onednn(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``TF_ENABLE_ONEDNN_OPTS=1`` when :func:`should_enable` (and TensorFlow is not loaded
    yet: then it is too late); returns whether it was set."""
    global _set_by_us
    environ = os.environ if environ is None else environ
    if "tensorflow" in sys.modules or not should_enable(environ, cpu_flags(), platform.system(), platform.machine()):
        return False
    environ[ENV] = "1"
    _set_by_us = environ is os.environ
    return True


def onednn_enabled() -> bool | None:
    """Whether the loaded TensorFlow runs its oneDNN kernels (None: cannot tell)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def onednn_note() -> str | None:
    """One line for the run log when the CPU kernels are not TensorFlow's default choice, or are slow."""
    enabled = onednn_enabled()
    if enabled and _set_by_us:
        return (
            "TensorFlow's oneDNN kernels: on (unet_tf set TF_ENABLE_ONEDNN_OPTS=1; "
            "TensorFlow alone leaves them off on this CPU)"
        )
    if enabled is False and "avx2" in cpu_flags() and os.environ.get(ENV, "").strip().lower() not in ("0", "false"):
        return (
            "note: TensorFlow's oneDNN kernels are off on this CPU, so training runs about 1.7x slower: "
            "import unet_tf before tensorflow, or set TF_ENABLE_ONEDNN_OPTS=1"
        )
    return None


NATIVE_LINE = re.compile(rb"[IWEF]\d{4} |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] ")


# a line starting otherwise cannot be native: it is passed on before its end arrives (progress bars)
_NATIVE_FIRST = frozenset(b"IWEF0123456789")


END_MARKER = b"\0unet_tf: end of hide_native_lines\0"


_WAIT_S = 0.05


# fd 2 is one per process: one block filters it at a time (an inner or concurrent block leaves it be)
_FD2 = threading.Lock()  # an undecided partial line waits this long for more bytes, then is passed on


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


_EOL = re.compile(rb"[\r\n]")


@dataclasses.dataclass
class LineFilter:
    """Splits bytes written to fd 2 into lines (ended by ``\\n`` or ``\\r``) and sorts them.

    ``feed(data)`` returns the bytes to pass on; native lines go to ``hidden``.
    ``pending`` is the start of a line not decided yet (it may still become a
    native line); ``passing`` is True inside a line already passed on.
    """

    pending: bytes = b""
    passing: bool = False
    hidden: collections.deque = dataclasses.field(default_factory=lambda: collections.deque(maxlen=1000))

    def feed(self, data: bytes) -> bytes:
        buf, out, i = self.pending + data, bytearray(), 0
        self.pending = b""
        while i < len(buf):
            end = _EOL.search(buf, i)
            if end is None:
                if self.passing or buf[i] not in _NATIVE_FIRST:
                    out += buf[i:]
                    self.passing = True
                else:
                    self.pending = buf[i:]
                break
            line, i = buf[i : end.end()], end.end()
            if not self.passing and NATIVE_LINE.match(line):
                self.hidden.append(line)
            else:
                out += line
            self.passing = False
        return bytes(out)

    def flush(self) -> bytes:
        """Decide the pending partial line now: hidden if it reads as native, else passed on."""
        line, self.pending = self.pending, b""
        if NATIVE_LINE.match(line):
            self.hidden.append(line)
            return b""
        self.passing = bool(line)
        return line


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _marker_start(buf: bytes) -> int:
    """How many bytes at the end of ``buf`` may be the start of :data:`END_MARKER` (0: none)."""
    i = buf.find(b"\0", max(0, len(buf) - len(END_MARKER) + 1))
    return len(buf) - i if i >= 0 and END_MARKER.startswith(buf[i:]) else 0


def _pump(read_fd: int, out_fd: int, lines: LineFilter) -> None:
    """Forward what arrives on ``read_fd`` through ``lines`` to ``out_fd`` until :data:`END_MARKER`
    (written after everything else, so nothing before it is lost) or the end of the file."""

    def emit(data: bytes) -> None:
        with contextlib.suppress(OSError):  # the original stderr is gone: keep draining, or writers would block
            _write_all(out_fd, data)

    carry = b""
    while True:
        if not select.select([read_fd], [], [], _WAIT_S if lines.pending else None)[0]:
            if not NATIVE_LINE.match(lines.pending):  # a partial line waited _WAIT_S: a prompt or progress bar
                emit(lines.flush())
            continue
        try:
            data = os.read(read_fd, 65536)
        except OSError:  # a pty whose other end is gone
            data = b""
        buf = carry + data
        end = buf.find(END_MARKER)
        if end >= 0 or not data:
            emit(lines.feed(buf[:end] if end >= 0 else buf) + lines.flush())
            return
        keep = _marker_start(buf)
        carry = buf[len(buf) - keep :]
        emit(lines.feed(buf[: len(buf) - keep]))


def _capture_pair(original: int) -> tuple[int, int]:
    """(read end, write end) to put on fd 2: a pty when ``original`` is a terminal, so that
    ``isatty`` and progress bars redraw as before (output processing off, its window size), else a pipe."""
    if os.isatty(original):
        try:
            import termios

            read_fd, write_fd = os.openpty()
            attrs = termios.tcgetattr(write_fd)
            attrs[1] &= ~termios.OPOST
            termios.tcsetattr(write_fd, termios.TCSANOW, attrs)
            with contextlib.suppress(AttributeError, termios.error):
                termios.tcsetwinsize(write_fd, termios.tcgetwinsize(original))
            return read_fd, write_fd
        except (ImportError, OSError):
            pass
    return os.pipe()


@contextlib.contextmanager
def hide_native_lines() -> Iterator[None]:
    """Hide TensorFlow's native log lines written to fd 2 in the block; pass every other line on.

    Lines matching :data:`NATIVE_LINE` are held back (and written after the
    block's error if it raises anything but a :class:`UserInputError`,
    Ctrl-C or a zero exit); all other output reaches the original fd 2
    unchanged and in order.
    ``UNET_TF_TF_LOGS=1``, or a system without ``select`` on pipes (Windows),
    leaves fd 2 alone, and so does a block inside another one (in any thread).
    Usable as a decorator: ``@hide_native_lines()``.
    """
    if os.environ.get("UNET_TF_TF_LOGS") == "1" or os.name == "nt" or not _FD2.acquire(blocking=False):
        yield  # shown, or already filtered by an enclosing block (in this or another thread)
        return
    try:
        with _filtered_fd2():
            yield
    finally:
        _FD2.release()


@contextlib.contextmanager
def _filtered_fd2() -> Iterator[None]:
    """The body of :func:`hide_native_lines` (which holds :data:`_FD2`)."""
    sys.stderr.flush()
    saved = os.dup(2)
    read_fd, write_fd = _capture_pair(saved)
    lines = LineFilter()
    pump = threading.Thread(target=_pump, args=(read_fd, saved, lines), name="unet_tf-stderr", daemon=True)
    pump.start()
    os.dup2(write_fd, 2)
    failed = False
    try:
        yield
    except (UserInputError, KeyboardInterrupt):
        raise
    except SystemExit as exc:
        failed = exc.code not in (0, None)
        raise
    except BaseException:
        failed = True
        raise
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        _write_all(write_fd, END_MARKER)  # after everything written to fd 2 in the block
        pump.join(timeout=10)
        if failed:
            _write_all(2, b"".join(lines.hidden))
        for fd in (saved, read_fd, write_fd):
            os.close(fd)


@contextlib.contextmanager
def quiet_run() -> Iterator[Notes]:
    """A run as the user reads it: notes said once with a count (:func:`unet_tf.errors.note_run`) and TensorFlow's
    native log lines hidden (:func:`hide_native_lines`). Usable as ``@quiet_run()``."""
    with note_run() as notes, hide_native_lines():
        yield notes
