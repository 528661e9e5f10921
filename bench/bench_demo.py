"""Wall time and validation Dice of the README demo, ``python train.py --dataset tem`` (issue 16).

    python bench/bench_demo.py --out runs/demo-native
    python bench/bench_demo.py --out runs/demo-avx2 --isa AVX2     # oneDNN and ATen capped at AVX2
    python bench/bench_demo.py --out runs/demo-old -- --lr-schedule constant --precision float32
    TF_ENABLE_ONEDNN_OPTS=0 python bench/bench_demo.py --out runs/demo-eigen --isa AVX2   # as TensorFlow
        # alone runs on an AVX2-only CPU: Eigen kernels, no oneDNN (see unet_tf/onednn.py)

Runs the demo command once (extra train.py flags after ``--``), in a fresh
process under ``/usr/bin/time -v`` when it exists, and prints one Markdown
row: the CPU (``lscpu`` model name, AVX-512 / BF16 / AMX flags), the ISA cap,
wall seconds of the whole command, training seconds, epochs, the best
validation Dice and the precision the run chose. ``--isa AVX2`` sets
``ONEDNN_MAX_CPU_ISA=AVX2`` and ``ATEN_CPU_CAPABILITY=avx2``: the instruction
set of an AVX2-only CPU, but not its clock or memory. On such a CPU TensorFlow
alone would leave its oneDNN kernels off; unet_tf turns them on, and the
"oneDNN" column says what the run used.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unet_tf.runtime import cpu_flags  # noqa: E402

SHOWN_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    found = re.search(r"^Model name:\s*(.+)$", out, re.M)
    return found.group(1).strip() if found else "unknown"


def onednn_column(summary: dict) -> str:
    """TensorFlow's oneDNN kernels in the run, and who chose (``TF_ENABLE_ONEDNN_OPTS`` given or not)."""
    state = {True: "on", False: "off"}.get(summary.get("onednn"), "?")
    given = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    return f"{state} (TF_ENABLE_ONEDNN_OPTS={given})" if given is not None else state


def run_demo(out: Path, isa: str | None, extra: list[str]) -> tuple[float, str]:
    env = dict(os.environ)
    if isa:
        env.update(ONEDNN_MAX_CPU_ISA=isa.upper(), ATEN_CPU_CAPABILITY=isa.lower())
    cmd = [sys.executable, str(ROOT / "train.py"), "--dataset", "tem", "--out", str(out), "--quiet", *extra]
    timer = ["/usr/bin/time", "-v"] if Path("/usr/bin/time").exists() else []
    t0 = time.perf_counter()
    run = subprocess.run(timer + cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        sys.exit(f"demo failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)
    return wall, f"{int(rss.group(1)) / 1024:.0f}" if rss else "?"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="run folder (replaced)")
    p.add_argument("--isa", help="cap oneDNN / ATen at this instruction set, e.g. AVX2")
    p.add_argument("extra", nargs="*", help="more train.py flags (after --)")
    args = p.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    wall, rss = run_demo(args.out, args.isa, args.extra)
    summary = json.loads((args.out / "summary.json").read_text())
    flags = cpu_flags()
    shown = " ".join(f for f in SHOWN_FLAGS if f in flags)
    head = ("CPU", "flags", "ISA cap", "oneDNN", "flags given", "wall s", "training s", "epochs", "best val Dice")
    print("| " + " | ".join(head) + " | precision | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {cpu_model()} ({os.cpu_count()} cores) | {shown} | {args.isa or 'none'} | {onednn_column(summary)} "
        f"| {' '.join(args.extra) or '-'} "
        f"| {wall:.0f} | {summary['wall_seconds']:.0f} | {summary['epochs_run']} | {summary['best']['dice']:.4f} "
        f"| {summary.get('precision', 'float32')} | {rss} |"
    )


if __name__ == "__main__":
    main()
