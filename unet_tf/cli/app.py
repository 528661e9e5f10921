"""``unet-tf-app [--port N] [--runs DIR]``: start the web app on 127.0.0.1.

Runs ``python -m streamlit run unet_tf/app/page.py`` headless, without usage
statistics, on this machine's loopback address only; the page finds models
under ``--runs`` (passed on as the ``UNET_TF_APP_RUNS`` environment variable).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from unet_tf.cli.common import run_main
from unet_tf.errors import UserInputError

HOST = "127.0.0.1"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="unet-tf-app",
        description="Web app: upload micrographs, see the segmentation, download masks and tables.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--port", type=int, default=8501, help=f"port on {HOST}")
    p.add_argument("--runs", default="runs", help="folder searched for best.keras models (run folders of train.py)")
    return p


def streamlit_command(port: int) -> list[str]:
    """The ``streamlit run`` command line: headless, loopback only, no telemetry, no file watcher."""
    from unet_tf.app import PAGE

    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(PAGE),
        "--server.address",
        HOST,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "minimal",
    ]


def app_environment(runs: str) -> dict[str, str]:
    """This process's environment plus the runs folder and this unet_tf on the path."""
    env = dict(os.environ)
    env["UNET_TF_APP_RUNS"] = str(Path(runs).resolve())
    root = str(Path(__file__).resolve().parents[2])  # the folder holding this unet_tf package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        if not 0 < args.port < 65536:
            raise UserInputError(f"--port {args.port}: must be between 1 and 65535")
        if importlib.util.find_spec("streamlit") is None:
            raise UserInputError('the web app needs Streamlit: pip install "unet_tf[app]"')
        print(f"unet_tf app: http://{HOST}:{args.port}  (models under {args.runs}; Ctrl+C stops it)", flush=True)
        command, env = streamlit_command(args.port), app_environment(args.runs)
        if os.name == "posix":  # become Streamlit: signals (Ctrl+C, a terminate) reach the server itself
            os.execve(command[0], command, env)
        return subprocess.call(command, env=env)

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
