"""TensorFlow's native log lines are hidden from fd 2 in a block; every other line passes on, in order."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unet_tf.errors import UserInputError
from unet_tf.runtime import NATIVE_LINE, LineFilter, hide_native_lines

REPO = Path(__file__).resolve().parents[1]
GLOG = b"E0000 00:00:1700000000.123456   12 util.cc:131] oneDNN supports DT_INT32 only on platforms with AVX-512.\n"
OLD = b"2024-01-31 12:00:00.123456: W tensorflow/core/framework/op_kernel.cc:1] old format\n"


@pytest.mark.parametrize(
    "line, native",
    [
        (GLOG, True),
        (OLD, True),
        (b"I0123 10:00:00.000001 1 port.cc:153] oneDNN custom operations are on\n", True),
        (b"note: colour images are reduced to gray\n", False),
        (b"Epoch 1/2\n", False),
        (b"ERROR: something\n", False),
        (b"2024-01-31 12:00:00 plain date\n", False),
    ],
)
def test_native_line_pattern(line, native):
    assert bool(NATIVE_LINE.match(line)) is native


def test_line_filter_across_chunk_boundaries():
    lines = LineFilter()
    out = lines.feed(b"first\nE0000 00:00") + lines.feed(b":1.2 1 a.cc:1] x\nsec") + lines.feed(b"ond\n")
    assert out == b"first\nsecond\n"
    assert list(lines.hidden) == [b"E0000 00:00:1.2 1 a.cc:1] x\n"]
    # a line that cannot be native is passed on before its end: progress bars redraw with \r
    assert lines.feed(b"\rtiles [#.] 1/2") == b"\rtiles [#.] 1/2"
    assert lines.feed(b"\rtiles [##] 2/2\n") == b"\rtiles [##] 2/2\n"
    # an undecided start waits; flush decides it
    assert lines.feed(b"12%") == b"" and lines.flush() == b"12%" and lines.feed(b" done\n") == b" done\n"


def test_only_normal_lines_reach_fd2_in_order(capfd):
    with hide_native_lines():
        os.write(2, b"one\n" + GLOG)
        os.write(2, b"two\n")
        os.write(2, OLD + b"three\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "one\ntwo\nthree\nafter\n"


def test_python_output_and_native_lines_in_one_process():
    """sys.stderr, warnings and tracebacks go through fd 2 too (pytest's capfd would bypass it: a subprocess)."""
    code = (
        "import os, sys, warnings\n"
        "from unet_tf.runtime import hide_native_lines\n"
        "with hide_native_lines():\n"
        "    print('one', file=sys.stderr)\n"
        f"    os.write(2, {GLOG!r})\n"
        "    warnings.warn('two')\n"
        f"    os.write(2, {OLD!r})\n"
        "    print('three', file=sys.stderr)\n"
        "    raise SystemExit(0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stderr.decode().splitlines() == ["one", "<string>:6: UserWarning: two", "three"]


def test_a_block_inside_another_leaves_fd2_to_the_outer_one(capfd):
    with hide_native_lines():
        fd2 = os.fstat(2)
        with hide_native_lines():
            assert os.fstat(2) == fd2  # no second pipe and thread
            os.write(2, b"inner\n" + GLOG)
        os.write(2, OLD + b"outer\n")
    assert capfd.readouterr().err == "inner\nouter\n"


def test_an_error_replays_the_hidden_lines_after_the_others(capfd):
    with pytest.raises(RuntimeError, match="boom"), hide_native_lines():
        os.write(2, GLOG + b"shown\n")
        raise RuntimeError("boom")
    assert capfd.readouterr().err == "shown\n" + GLOG.decode()
    with pytest.raises(UserInputError), hide_native_lines():  # a user's mistake: only its one line matters
        os.write(2, GLOG + b"shown\n")
        raise UserInputError("x")
    assert capfd.readouterr().err == "shown\n"


def test_tf_logs_env_shows_everything(capfd, monkeypatch):
    monkeypatch.setenv("UNET_TF_TF_LOGS", "1")
    with hide_native_lines():
        os.write(2, GLOG + b"shown\n")
    assert capfd.readouterr().err == GLOG.decode() + "shown\n"


def test_partial_line_is_passed_on_while_the_block_runs(capfd):
    """A prompt or progress bar without a newline reaches fd 2 at once, not when the block ends."""
    with hide_native_lines():
        os.write(2, b"50%")  # starts with a digit: could be a native date line, waits briefly
        time.sleep(0.5)
        assert capfd.readouterr().err == "50%"
        os.write(2, b" done\n")
    assert capfd.readouterr().err == " done\n"


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="no pseudo-terminals")
def test_terminal_stays_a_terminal():
    """On a terminal, fd 2 inside the block is a pty, so progress bars still redraw in place."""
    code = (
        "import os\n"
        "from unet_tf.runtime import hide_native_lines\n"
        "with hide_native_lines():\n"
        "    os.write(2, b'tty=%d\\n' % os.isatty(2))\n"
        f"    os.write(2, {GLOG!r})\n"
        "    os.write(2, b'\\rbar 1/2\\rbar 2/2\\n')\n"
    )
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=slave, stdout=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=60) == 0
    os.close(master)
    assert out.replace(b"\r\n", b"\n") == b"tty=1\n\rbar 1/2\rbar 2/2\n"
