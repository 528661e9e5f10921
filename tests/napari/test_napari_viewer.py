"""The napari widgets in a real viewer (``viewer_cases.py``), run in a fresh interpreter under Xvfb.

Why a fresh interpreter: the viewer's OpenGL (Mesa's software renderer on a headless machine) and TensorFlow
each bring their own LLVM; in one process, TensorFlow must be loaded first, and the process must end without
running LLVM's exit handlers (``os._exit``), or it aborts. A pytest run that has imported TensorFlow long before
cannot guarantee either, so the viewer runs in its own process and this test checks its exit status.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
pytest.importorskip("pytest_xvfb")

HERE = Path(__file__).resolve().parent
RUNNER = (
    "import os, sys, pytest; "
    "code = pytest.main(sys.argv[1:]); sys.stdout.flush(); sys.stderr.flush(); os._exit(int(code))"
)


@pytest.mark.slow  # about 60 s: a fresh interpreter, TensorFlow, napari, a tiny fine-tuning
def test_viewer_cases_pass_in_a_fresh_process(tmp_path):
    root = HERE.parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    args = [
        str(HERE / "viewer_cases.py"),
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "-x",
        "--rootdir",
        str(root),
    ]
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, *args, "--basetemp", str(tmp_path / "base")],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
