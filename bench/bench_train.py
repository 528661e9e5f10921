"""Training throughput (patches/s) of unet_tf's Keras models against the same network in PyTorch.

Variants of one model and width:

* ``keras-pipeline``: Keras, batches from the real pipeline (``make_dataset``,
  default augmentation on, 12 synthetic 1024 x 1024 images), through ``model.fit``;
* ``keras-fixed``: Keras, one fixed in-memory batch (``Dataset.from_tensors(...)
  .repeat()``), through ``model.fit``: the model's step alone;
* ``torch``: the layer-for-layer PyTorch twin (``bench/torch_reference.py``),
  channels_last, the same fixed batch size, Adam (lr 1e-3), BCE on the sigmoid
  output, ``zero_grad / forward / loss / backward / step``.

The Keras side is compiled with Adam (lr 1e-3) and binary cross-entropy too
(``--loss train`` uses train.py's loss and metrics instead). Every variant runs
in its own worker process, which builds its model and warms it up once; the
parent then asks the workers in turn, round after round (A, B, C, A, B, C,
...), so that slow drifts of the machine hit every variant alike, and reports
the median over rounds and the ratio to PyTorch measured in the same run.
Threads: every worker gets ``--threads`` intra-op and ``--inter-threads``
inter-op threads (``tf.config.threading`` / ``torch.set_num_threads`` and
``torch.set_num_interop_threads``); only one worker computes at a time.

FLOPs are analytic: the multiply-adds of every convolution (kernel x input
channels x output pixels; a transposed convolution: x input pixels), x 2,
from the Keras model's layers and their output shapes at the patch size; a
training step is counted as 3 x forward. Peak: cores x clock x 64 fp32
FLOP/cycle (two 512-bit FMA units). The clock is /proc/cpuinfo's "cpu MHz",
which under a hypervisor is the nominal (TSC) rate, not the boost clock the
cores really run at; ``--clock-ghz`` sets it (``--from-json`` reprints a saved
run with another clock).

    python bench/bench_train.py                        # main table, both models, base 16 and 32
    python bench/bench_train.py --suite levers         # speed levers on the Keras step (U-Net 16)
    python bench/bench_train.py --suite main --models unet --widths 16 --rounds 5
    python bench/bench_train.py --from-json run.json --clock-ghz 4.07
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent


# === Workers: one model, one process, JSON lines on stdin / stdout ===


def _protocol_stream():
    """Keep the real stdout for JSON replies; send everything else printed to stderr."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return proto


def keras_conv_macs(model, patch: int) -> int:
    """Multiply-adds of all Conv2D / Conv2DTranspose layers of ``model`` for one ``patch``^2 input."""
    import keras

    convs = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    probe = keras.Model(model.inputs, [layer.output for layer in convs])
    specs = probe.compute_output_spec(keras.KerasTensor((1, patch, patch, model.inputs[0].shape[-1])))
    macs = 0
    for layer, spec in zip(convs, specs):
        kh, kw = layer.kernel_size
        c_in, c_out = layer.input.shape[-1], layer.filters
        h, w = spec.shape[1], spec.shape[2]
        if isinstance(layer, keras.layers.Conv2DTranspose):  # every input pixel scatters a k x k x C_out patch
            sh, sw = layer.strides
            macs += (h // sh) * (w // sw) * kh * kw * c_in * c_out
        else:
            macs += h * w * kh * kw * (c_in // layer.groups) * c_out
    return int(macs)


def torch_conv_macs(model, patch: int) -> int:
    """The same count on the PyTorch twin, by forward hooks (a cross-check of the Keras count)."""
    import torch
    from torch import nn

    total = [0]

    def hook(module, inputs, output):
        kh, kw = module.kernel_size
        if isinstance(module, nn.ConvTranspose2d):
            x = inputs[0]
            total[0] += x.shape[2] * x.shape[3] * kh * kw * module.in_channels * module.out_channels
        else:
            total[0] += (
                output.shape[2] * output.shape[3] * kh * kw * module.in_channels // module.groups * module.out_channels
            )

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, patch, patch))
    model.train(was_training)
    for h in handles:
        h.remove()
    return int(total[0])


def keras_worker(spec: dict) -> None:
    """Build, compile and warm one Keras model, then answer timing requests."""
    proto = _protocol_stream()
    sys.path.insert(0, str(REPO))
    import unet_tf  # noqa: F401  (first: it chooses TensorFlow's oneDNN kernels before TensorFlow loads)

    t_setup = time.perf_counter()
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
    tf.config.threading.set_inter_op_parallelism_threads(spec["inter_threads"])
    import keras

    from unet_tf.config import AugmentConfig
    from unet_tf.data.pipeline import make_dataset
    from unet_tf.data.sampling import class_counts, rare_classes_from_counts
    from unet_tf.models import build_resunet, build_unet

    if spec.get("policy", "float32") != "float32":
        keras.mixed_precision.set_global_policy(spec["policy"])
    if spec.get("plain_bn"):  # the Keras layer the models used before the fused one (blocks.py looks it up per call)
        import unet_tf.models.blocks

        unet_tf.models.blocks.FusedBatchNormalization = keras.layers.BatchNormalization
    keras.utils.set_random_seed(0)
    builder = build_unet if spec["model"] == "unet" else build_resunet
    depth = {"depth": spec["depth"]} if spec.get("depth") else {}  # else the architecture's default
    model = builder(n_classes=2, base_filters=spec["base"], upsampling=spec["upsampling"], **depth)
    if spec.get("loss", "bce") == "train":
        from unet_tf.training.losses import make_loss
        from unet_tf.training.metrics import DiceScore, IoUScore, PixelAccuracy

        loss = make_loss("auto", 2, pos_weight=2.0)
        metrics = [DiceScore(2, name="dice"), IoUScore(2, name="iou"), PixelAccuracy(2, name="pixel_accuracy")]
    else:
        from unet_tf.training.losses import WeightedBCE

        # the pipeline's y carries a weight channel; WeightedBCE reads it (plain BCE otherwise, same values)
        loss, metrics = WeightedBCE(), None
    spe = spec.get("steps_per_execution", 1)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=loss,
        metrics=metrics,
        jit_compile=spec.get("jit_compile", "auto"),
        steps_per_execution=spe,
    )

    b, p = spec["batch"], spec["patch"]
    rng = np.random.default_rng(0)
    x = rng.random((b, p, p, 1), dtype=np.float32)
    y = (rng.random((b, p, p, 1)) > 0.5).astype(np.float32)
    datasets = {"fixed": tf.data.Dataset.from_tensors((x, y)).repeat()}
    if "pipeline" in spec["variants"]:
        sys.path.insert(0, str(BENCH))
        from bench_pipeline import synthetic

        images, masks = synthetic(n_classes=2)
        rare = list(rare_classes_from_counts(class_counts(masks, 2)))
        ds = make_dataset(
            images,
            masks,
            2,
            training=True,
            patch_size=p,
            batch_size=b,
            patches_per_image=16,
            augment=AugmentConfig(),
            oversample_rare=0.3 if rare else 0.0,
            rare_classes=rare or None,
            seed=0,
        ).repeat()
        if spec.get("data_threads"):
            options = tf.data.Options()
            options.threading.private_threadpool_size = spec["data_threads"]
            ds = ds.with_options(options)
        datasets["pipeline"] = ds

    predict_fn, tiles = None, None
    if "infer" in spec["variants"]:
        from unet_tf.prediction.tiled import make_predict_fn

        predict_fn = make_predict_fn(model)
        tiles = rng.random((spec["infer_batch"], spec["infer_tile"], spec["infer_tile"], 1), dtype=np.float32)

    class Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.marks.append((batch + 1, time.perf_counter()))

    def run(variant: str, steps: int, warmup: int) -> dict:
        if variant == "infer":
            return _time_calls(lambda: predict_fn(tiles), steps, warmup, len(tiles))
        warmup = -(-warmup // spe) * spe
        steps = max(spe, -(-steps // spe) * spe)
        timer = Timer()
        timer.marks = []
        model.fit(datasets[variant], epochs=1, steps_per_epoch=warmup + steps, verbose=0, callbacks=[timer])
        start = [t for n, t in timer.marks if n == warmup]
        t0 = start[0] if start else None
        n_end, t_end = timer.marks[-1]
        if t0 is None:
            return {"rate": None}
        seconds = t_end - t0
        return {"rate": (n_end - warmup) * b / seconds, "step_s": seconds / (n_end - warmup)}

    macs = keras_conv_macs(model, p)
    setup = time.perf_counter() - t_setup
    proto.write(
        json.dumps(
            {
                "ready": True,
                "setup_s": setup,
                "macs": macs,
                "params": int(model.count_params()),
                "jit_compile": bool(model.jit_compile),
                "tf": tf.__version__,
                "keras": keras.__version__,
            }
        )
        + "\n"
    )
    _serve(proto, run)


def torch_worker(spec: dict) -> None:
    """Build the PyTorch twin, then answer timing requests (fixed batch only)."""
    proto = _protocol_stream()
    t_setup = time.perf_counter()
    import torch
    from torch import nn

    torch.set_num_threads(spec["threads"])
    torch.set_num_interop_threads(spec["inter_threads"])
    sys.path.insert(0, str(BENCH))
    from torch_reference import build_torch_model, torch_counts

    torch.manual_seed(0)
    model = build_torch_model(spec["model"], 2, spec["base"], upsampling=spec["upsampling"])
    macs = torch_conv_macs(model, spec["patch"])
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCELoss()
    b, p = spec["batch"], spec["patch"]
    x = torch.rand(b, 1, p, p).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(b, 1, p, p) > 0.5).float().contiguous(memory_format=torch.channels_last)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()

    tiles = None
    if "infer" in spec["variants"]:
        t = spec["infer_tile"]
        tiles = torch.rand(spec["infer_batch"], 1, t, t).contiguous(memory_format=torch.channels_last)

    def infer():
        model.eval()
        with torch.inference_mode():
            out = model(tiles).numpy()
        model.train()
        return out

    def run(variant: str, steps: int, warmup: int) -> dict:
        if variant == "infer":
            return _time_calls(infer, steps, warmup, len(tiles))
        if variant != "fixed":
            raise ValueError("the PyTorch reference has the fixed-batch and infer variants only")
        return _time_calls(step, steps, warmup, b)

    setup = time.perf_counter() - t_setup
    proto.write(
        json.dumps(
            {
                "ready": True,
                "setup_s": setup,
                "macs": macs,
                "params": torch_counts(model)["total"],
                "torch": torch.__version__,
                "mkldnn": bool(torch.backends.mkldnn.is_available()),
            }
        )
        + "\n"
    )
    _serve(proto, run)


def _time_calls(fn, steps: int, warmup: int, per_call: int) -> dict:
    """Call ``fn`` ``warmup`` times, then time ``steps`` calls; items per second."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    seconds = time.perf_counter() - t0
    return {"rate": steps * per_call / seconds, "step_s": seconds / steps} if steps else {"rate": None}


def _serve(proto, run) -> None:
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        reply = run(request["variant"], request["steps"], request["warmup"])
        proto.write(json.dumps(reply) + "\n")


# === Parent: workers, alternation, table ===


class Worker:
    """A worker subprocess; ``ask`` sends one request and waits for its reply."""

    def __init__(self, spec: dict, log_dir: Path):
        self.spec = spec
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **spec.get("env", {})}
        self.log_path = log_dir / f"{spec['name'].replace(' ', '_').replace('/', '_')}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )
        self.info = self._reply()

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            tail = self.log_path.read_text()[-3000:]
            raise RuntimeError(f"worker {self.spec['name']} died (exit {self.proc.returncode}):\n{tail}")
        return json.loads(line)

    def ask(self, variant: str, steps: int, warmup: int) -> dict:
        self.proc.stdin.write(json.dumps({"variant": variant, "steps": steps, "warmup": warmup}) + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def read_clock_ghz() -> tuple[float, str]:
    """CPU clock from /proc/cpuinfo ("cpu MHz"), else BogoMIPS / 2 (the TSC rate), in GHz."""
    mhz, bogo = [], []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "cpu MHz":
                mhz.append(float(value))
            elif key.strip().lower() == "bogomips":
                bogo.append(float(value))
    except (OSError, ValueError):
        pass
    if mhz:
        return max(mhz) / 1000, "/proc/cpuinfo cpu MHz"
    if bogo:
        return bogo[0] / 2000, "/proc/cpuinfo BogoMIPS / 2 (TSC rate)"
    return 0.0, "unknown"


def base_spec(args, model: str, base: int, upsampling: str = "nearest") -> dict:
    return {
        "model": model,
        "base": base,
        "upsampling": upsampling,
        "batch": args.batch_size,
        "patch": args.patch_size,
        "threads": args.threads,
        "inter_threads": args.inter_threads,
        "loss": args.loss,
        "infer_tile": args.infer_tile,
        "infer_batch": args.infer_batch,
    }


def main_groups(args) -> list[list[tuple[str, dict, str]]]:
    """One group per model and width: Keras pipeline, Keras fixed, PyTorch."""
    groups = []
    for model in args.models:
        for base in args.widths:
            for up in args.upsampling:
                tag = f"{model} {base} {up}"
                keras_spec = {
                    **base_spec(args, model, base, up),
                    "kind": "keras",
                    "name": f"keras {tag}",
                    "jit_compile": args.jit_compile,
                    "variants": ["fixed", "pipeline"] if args.pipeline else ["fixed"],
                }
                torch_spec = {
                    **base_spec(args, model, base, up),
                    "kind": "torch",
                    "name": f"torch {tag}",
                    "variants": ["fixed"],
                }
                rows = [("keras-fixed", keras_spec, "fixed"), ("torch", torch_spec, "fixed")]
                if args.pipeline:
                    rows.insert(0, ("keras-pipeline", keras_spec, "pipeline"))
                if args.inference:
                    for s in (keras_spec, torch_spec):
                        s["variants"] = s["variants"] + ["infer"]
                    rows += [("keras-infer", keras_spec, "infer"), ("torch-infer", torch_spec, "infer")]
                groups.append(rows)
    return groups


LEVERS = {
    # name: (changes to the Keras worker spec, variants measured)
    "baseline": ({}, ["fixed", "pipeline"]),
    "jit_compile=True (XLA)": ({"jit_compile": True}, ["fixed", "pipeline"]),
    "steps_per_execution=4": ({"steps_per_execution": 4}, ["fixed"]),
    "inter-op threads 1": ({"inter_threads": 1}, ["fixed"]),
    "plain Keras BatchNorm (before the fused layer)": ({"plain_bn": True}, ["fixed"]),
    "mixed_bfloat16": ({"policy": "mixed_bfloat16"}, ["fixed"]),
    "depth 3": ({"depth": 3}, ["fixed"]),
    "depth 3 + mixed_bfloat16": ({"depth": 3, "policy": "mixed_bfloat16"}, ["fixed"]),
    "oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)": ({"env": {"TF_ENABLE_ONEDNN_OPTS": "0"}}, ["fixed"]),
    "train.py loss + metrics": ({"loss": "train"}, ["fixed"]),
    "tf.data private threadpool 1": ({"data_threads": 1}, ["pipeline"]),
    "upsampling bilinear": ({"upsampling": "bilinear"}, ["fixed"]),
    "upsampling transpose": ({"upsampling": "transpose"}, ["fixed"]),
}


def lever_groups(args) -> list[list[tuple[str, dict, str]]]:
    """Keras (``--models[0]``, ``--widths[0]``) with one lever each, in groups of at most
    ``--group-size`` Keras workers; every group also runs the PyTorch twin of each
    upsampling mode it holds, so each ratio comes from one alternation."""
    model, base = args.models[0], args.widths[0]
    chosen = args.levers or list(LEVERS)
    keras_rows = []
    for name in chosen:
        changes, variants = LEVERS[name]
        if not args.pipeline:
            variants = [v for v in variants if v != "pipeline"]
            if not variants:
                continue
        spec = {
            **base_spec(args, model, base),
            "kind": "keras",
            "name": f"keras {name}",
            "jit_compile": args.jit_compile,
            **changes,
            "variants": variants,
        }
        keras_rows.append([(f"{name} [{v}]", spec, v) for v in variants])
    groups = []
    for start in range(0, len(keras_rows), args.group_size):
        rows = [row for worker in keras_rows[start : start + args.group_size] for row in worker]
        for up in sorted({spec["upsampling"] for _, spec, _ in rows}):
            spec = {**base_spec(args, model, base, up), "kind": "torch", "name": f"torch {up}", "variants": ["fixed"]}
            rows.append((f"PyTorch {up} [fixed]", spec, "fixed"))
        groups.append(rows)
    return groups


def run_group(rows, args, log_dir: Path) -> list[dict]:
    """Start the group's workers, warm every row, then alternate for ``args.rounds`` rounds."""
    workers: dict[str, Worker] = {}
    try:
        for _, spec, _ in rows:
            if spec["name"] not in workers:
                t = time.perf_counter()
                workers[spec["name"]] = Worker(spec, log_dir)
                print(f"  started {spec['name']} ({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
        for label, spec, variant in rows:  # trace / compile / first oneDNN primitives, untimed
            t = time.perf_counter()
            workers[spec["name"]].ask(variant, 0, args.warmup + 1)
            print(f"  warmed {label} ({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
        rates = {label: [] for label, _, _ in rows}
        for r in range(args.rounds):
            for label, spec, variant in rows:
                reply = workers[spec["name"]].ask(variant, args.steps, args.warmup)
                rates[label].append(reply["rate"])
            print(
                f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in rates.items()),
                file=sys.stderr,
                flush=True,
            )
        out = []
        for label, spec, variant in rows:
            info = workers[spec["name"]].info
            out.append(
                {
                    "label": label,
                    "kind": spec["kind"],
                    "model": spec["model"],
                    "base": spec["base"],
                    "upsampling": spec["upsampling"],
                    "variant": variant,
                    "rates": rates[label],
                    "median": statistics.median(rates[label]),
                    "macs": info["macs"],
                    "params": info["params"],
                    "spec": spec,
                    "info": info,
                }
            )
        return out
    finally:
        for w in workers.values():
            w.close()


def isa_caps() -> str:
    """The environment variables that cap the instruction set of oneDNN (both frameworks) and ATen."""
    caps = [f"{k}={os.environ[k]}" for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if os.environ.get(k)]
    return ", ".join(caps) or "none (the CPU's best)"


def print_table(
    results: list[dict], args, peak: float, clock: float, clock_src: str, command: str, caps: str | None = None
) -> None:
    print(f"\n`{command}`\n")
    sys.path.insert(0, str(REPO))
    from unet_tf.runtime import cpu_flags

    flags = cpu_flags()
    bf16_flags = ", ".join(sorted(f for f in flags if "bf16" in f or "amx" in f)) or "none"
    print(
        f"{os.cpu_count()} cores, clock {clock:.2f} GHz ({clock_src}); peak fp32 = cores x clock x 64 FLOP "
        f"= {peak:.0f} GFLOP/s; bf16 flags: {bf16_flags}; ISA caps: {caps or isa_caps()}. "
        f"Patch {args.patch_size}, batch {args.batch_size}, {args.threads} intra-op / {args.inter_threads} "
        f"inter-op threads per framework; median of {args.rounds} alternating rounds of {args.steps} steps "
        f"(after {args.warmup} untimed). "
        f"Training rows: {args.patch_size} px patches, GFLOP/s = 3 x forward x patches/s; infer rows: "
        f"{args.infer_tile} px tiles in batches of {args.infer_batch}, patches = tiles, GFLOP/s = forward x tiles/s.\n"
    )
    torch_rate = {}  # the PyTorch twin measured in the same group (the same alternation)
    for r in results:
        if r["kind"] == "torch":
            torch_rate[(r["group"], r["model"], r["base"], r["upsampling"], r["variant"] == "infer")] = r["median"]
    head = [
        "variant",
        "model",
        "base",
        "upsampling",
        "patches/s (median)",
        "rounds",
        "s/step",
        "vs PyTorch",
        "fwd GFLOP/patch",
        "GFLOP/s",
        "% of peak",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in results:
        infer = r["variant"] == "infer"
        ref = torch_rate.get((r["group"], r["model"], r["base"], r["upsampling"], infer))
        fwd = 2 * r["macs"] / 1e9 * ((args.infer_tile / args.patch_size) ** 2 if infer else 1)
        achieved = (1 if infer else 3) * fwd * r["median"]
        per_call = args.infer_batch if infer else args.batch_size
        cells = [
            r["label"],
            r["model"],
            r["base"],
            r["upsampling"],
            f"{r['median']:.2f}",
            " ".join(f"{v:.2f}" for v in r["rates"]),
            f"{per_call / r['median']:.2f}",
            f"{r['median'] / ref:.2f}x" if ref else "-",
            f"{fwd:.2f}",
            f"{achieved:.0f}",
            f"{100 * achieved / peak:.0f} %" if peak else "-",
        ]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    params = {}
    for r in results:
        params.setdefault((r["model"], r["base"], r["upsampling"]), {})[r["kind"]] = (r["params"], r["macs"])
    print(
        "\nParameters (Keras count_params / PyTorch parameters + BN running stats) and conv MACs per patch "
        "(Keras layer walk / PyTorch hooks):"
    )

    def fmt(pair, i):
        return "-" if pair is None else f"{pair[i]:,}"

    for key, kinds in params.items():
        k, t = kinds.get("keras"), kinds.get("torch")
        print(
            f"- {key[0]} base {key[1]} {key[2]}: params {fmt(k, 0)} / {fmt(t, 0)}; "
            f"MACs {fmt(k, 1)} / {fmt(t, 1)}" + ("" if not (k and t) or k == t else "  MISMATCH")
        )


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--suite", choices=("main", "levers"), default="main")
    p.add_argument("--models", nargs="+", default=["unet", "resunet"], choices=["unet", "resunet"])
    p.add_argument("--widths", nargs="+", type=int, default=[16, 32], help="base filters")
    p.add_argument("--upsampling", nargs="+", default=["nearest"], choices=["nearest", "bilinear", "transpose"])
    p.add_argument("--levers", nargs="+", choices=list(LEVERS), help="levers to measure (default all)")
    p.add_argument("--no-pipeline", dest="pipeline", action="store_false", help="skip the make_dataset variant")
    p.add_argument(
        "--inference",
        action="store_true",
        help="also time inference: model(x, training=False) on --infer-batch tiles of --infer-tile px "
        "(Keras: unet_tf.prediction.tiled.make_predict_fn; PyTorch: eval + inference_mode)",
    )
    p.add_argument("--infer-tile", type=int, default=512)
    p.add_argument("--infer-batch", type=int, default=4)
    p.add_argument("--patch-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=2, help="intra-op threads, both frameworks")
    p.add_argument("--inter-threads", type=int, default=2, help="inter-op threads, both frameworks")
    p.add_argument(
        "--jit-compile",
        default="auto",
        type=lambda s: {"true": True, "false": False}.get(s.lower(), s),
        help="Keras compile(jit_compile=...): auto (off on CPU), true, false",
    )
    p.add_argument(
        "--loss",
        choices=("bce", "train"),
        default="bce",
        help="Keras loss: plain BCE (as the PyTorch reference) or train.py's loss and metrics",
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=4, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before each timed run")
    p.add_argument("--group-size", type=int, default=6, help="workers alive at once (memory)")
    p.add_argument("--clock-ghz", type=float, help="CPU clock for the peak (default: read /proc/cpuinfo)")
    p.add_argument("--json", type=Path, help="also write every measurement here")
    p.add_argument("--from-json", type=Path, help="measure nothing: print the table of a --json file again")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: JSON spec of one worker
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        (keras_worker if spec["kind"] == "keras" else torch_worker)(spec)
        return
    command = "python bench/bench_train.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    clock, clock_src = (args.clock_ghz, "--clock-ghz") if args.clock_ghz else read_clock_ghz()
    peak = (os.cpu_count() or 1) * clock * 64
    if args.from_json:  # print a saved run's table again (e.g. with another --clock-ghz)
        saved = json.loads(args.from_json.read_text())
        first = saved["results"][0]
        spec = first["spec"]
        args.patch_size, args.batch_size = spec["patch"], spec["batch"]
        args.infer_tile, args.infer_batch = spec.get("infer_tile", 512), spec.get("infer_batch", 4)
        args.threads, args.inter_threads = spec["threads"], spec["inter_threads"]
        args.rounds = len(first["rates"])
        for key, value in saved.get("args", {}).items():
            if key in ("steps", "warmup"):
                setattr(args, key, value)
        caps = saved.get("isa_caps", "not recorded")
        print_table(saved["results"], args, peak, clock, clock_src, saved["command"], caps)
        return
    groups = main_groups(args) if args.suite == "main" else lever_groups(args)
    results = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for i, rows in enumerate(groups, 1):
            print(f"group {i}/{len(groups)}: {', '.join(label for label, _, _ in rows)}", file=sys.stderr, flush=True)
            for r in run_group(rows, args, Path(tmp)):
                results.append({**r, "group": i})
    print(f"total {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print_table(results, args, peak, clock, clock_src, command)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": command,
                    "clock_ghz": clock,
                    "peak_gflops": peak,
                    "isa_caps": isa_caps(),
                    "args": {"steps": args.steps, "warmup": args.warmup},
                    "results": results,
                },
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
