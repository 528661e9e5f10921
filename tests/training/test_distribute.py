"""Scale-out: TF_CONFIG, sharded pipelines and predictions, MirroredStrategy, two workers on loopback.

The runs that need TensorFlow configured in a particular way (two logical CPU
devices; a multi-worker strategy created before any other op) run in
subprocesses with timeouts, so a hang fails the test instead of the CI job.

The training data of the equivalence checks is three copies of one image with
three different masks, cut without augmentation into patches the size of the
image. The copies make BatchNormalization statistics of any sub-batch equal to
those of the whole batch (under tf.distribute each replica normalizes with its
own batch, as Keras does by default), while the different masks give every
sample its own gradient: weights that match a single-process run with the same
global batch can only come from gradients averaged over the replicas. The
loss is plain BCE, a mean over pixels, so a mean over replicas equals the mean
over the global batch (an overlap loss such as Tversky is computed per replica
batch and would differ slightly).
"""

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from unet_tf.cli.train import build_parser, config_from_args
from unet_tf.cli.train import main as train_main
from unet_tf.data.layouts import Sample
from unet_tf.errors import UserInputError
from unet_tf.prediction.inputs import shard_samples, shard_suffix
from unet_tf.training.distribute import WorkerInfo, cluster_note, worker_info

REPO = Path(__file__).resolve().parents[2]
RUN_FILES = {"best.keras", "last.keras", "config.json", "history.csv", "curves.png", "summary.json"}
TIMEOUT = 240  # seconds for one subprocess run; a hang fails the test


# === Pure parts ===


@pytest.mark.parametrize("n_items", [0, 1, 5, 7, 10])
@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_shard_samples_split_without_overlap_or_gaps(n_items, count):
    samples = [Sample(Path(f"/d/img_{i:02d}.tif")) for i in np.random.default_rng(n_items).permutation(n_items)]
    shards = [shard_samples(samples, i, count) for i in range(count)]
    names = [s.image.name for shard in shards for s in shard]
    assert sorted(names) == sorted(s.image.name for s in samples)  # every image once: no gap, no overlap
    assert len(set(names)) == len(names)
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= 1
    # the split does not depend on the order each worker listed its inputs in
    assert [shard_samples(samples[::-1], i, count) for i in range(count)] == shards


def test_shard_arguments_and_table_names(capsys):
    from unet_tf.cli.predict import build_parser as predict_parser

    for bad in (3, -1):
        with pytest.raises(UserInputError, match="need 0 <= i < n"):
            shard_samples([], bad, 3)
    assert predict_parser().parse_args(["--weights", "w.keras", "--shard", "1/3"]).shard == (1, 3)
    for text in ("2/2", "0/0", "a/b", "1"):
        with pytest.raises(SystemExit):
            predict_parser().parse_args(["--weights", "w.keras", "--shard", text])
    assert "--shard" in capsys.readouterr().err
    assert shard_suffix(0, 1) == "" and shard_suffix(1, 3) == ".shard-1-of-3"


def test_worker_info_reads_tf_config():
    assert worker_info("") == WorkerInfo(0, 1, True)
    workers = {"worker": ["h1:1", "h2:1", "h3:1"]}
    assert worker_info(json.dumps({"cluster": workers, "task": {"type": "worker", "index": 0}})) == (0, 3, True)
    assert worker_info(json.dumps({"cluster": workers, "task": {"type": "worker", "index": 2}})) == (2, 3, False)
    with_chief = {"chief": ["c:1"], **workers}
    assert worker_info(json.dumps({"cluster": with_chief, "task": {"type": "chief", "index": 0}})) == (0, 4, True)
    assert worker_info(json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}})) == (1, 4, False)
    for bad, message in (
        ("{not json", "not a cluster description"),
        (json.dumps({"cluster": workers}), "not a cluster description"),
        (json.dumps({"cluster": workers, "task": {"type": "worker", "index": 3}}), "not in the cluster"),
        (json.dumps({"cluster": workers, "task": {"type": "ps", "index": 0}}), "not supported"),
    ):
        with pytest.raises(UserInputError, match=message):
            worker_info(bad)
    two = json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}})
    assert "(use `train.strategy` multiworker on every worker)" in cluster_note("auto", two)
    assert cluster_note("multiworker", two) is None and cluster_note("auto", "") is None


def test_strategy_flag_errors_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("strategy: bogus\n")
    assert train_main(["--config", str(cfg), "--out", str(tmp_path / "a")]) == 2
    assert "--strategy bogus: choose one of auto, none, mirrored, multiworker" in capsys.readouterr().err
    assert train_main(["--strategy", "multiworker", "--out", str(tmp_path / "b")]) == 2
    assert "set TF_CONFIG on every machine" in capsys.readouterr().err
    assert train_main(["--strategy", "multiworker", "--ablation", "--train-sizes", "2"]) == 2
    assert "not available with --strategy multiworker" in capsys.readouterr().err
    parsed = config_from_args(build_parser().parse_args(["--strategy", "mirrored", "--batch-size", "3"]))
    assert parsed.train.strategy == "mirrored" and parsed.train.batch_size == 3


def test_pipeline_shards_hold_exactly_the_unsharded_patches():
    from unet_tf.config import AugmentConfig
    from unet_tf.data.pipeline import make_dataset

    rng = np.random.default_rng(0)
    images = [rng.random((40, 48)).astype(np.float32), rng.random((32, 32)).astype(np.float32)]
    masks = [(im > 0.5).astype(np.uint8) for im in images]

    def patches(training, shard):
        ds = make_dataset(
            images,
            masks,
            2,
            training=training,
            patch_size=16,
            batch_size=1,
            patches_per_image=5,
            augment=AugmentConfig() if training else None,
            seed=3,
            shard=shard,
        )
        return [x.numpy().tobytes() for x, _ in ds]

    for training in (True, False):
        whole = patches(training, (0, 1))
        parts = [patches(training, (i, 3)) for i in range(3)]
        assert sorted(p for part in parts for p in part) == sorted(whole)
        assert parts[1] == whole[1::3]  # shard i holds patches i, i+n, ...
    with pytest.raises(UserInputError, match="shard 2 of 2"):
        make_dataset(images, masks, 2, training=True, patch_size=16, shard=(2, 2))


# === Runs ===


@pytest.fixture(scope="module")
def twin_data(tmp_path_factory):
    """Folder dataset: three copies of one 64 x 64 image, each with its own mask (0/255)."""
    import cv2

    root = tmp_path_factory.mktemp("twins")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur((rng.random((64, 64)) * 255).astype(np.uint8), (5, 5), 2)
    for i in range(3):
        mask = np.zeros((64, 64), np.uint8)
        mask[8 + 10 * i : 30 + 10 * i, 5 + 12 * i : 40 + 5 * i] = 255
        cv2.imwrite(str(root / "images" / f"im{i}.png"), image)
        cv2.imwrite(str(root / "masks" / f"im{i}.png"), mask)
    return root


def twin_args(data_dir, epochs=3):
    return [
        "--dataset",
        "folder",
        "--data-dir",
        str(data_dir),
        "--class-values",
        "0,255",
        "--patch-size",
        "64",
        "--patches-per-image",
        "1",
        "--val-fraction",
        "0.34",
        "--no-augment",
        "--oversample-rare",
        "0",
        "--base-filters",
        "4",
        "--depth",
        "2",
        "--epochs",
        str(epochs),
        "--steps-per-epoch",
        "1",
        "--loss",
        "bce",
        "--seed",
        "0",
        "--precision",
        "float32",  # bfloat16 rounding differs between one and two replicas
        "--lr",
        "1e-3",  # the reduction-order differences stay under the 1e-4 tolerance (2e-3 doubles them)
        "--quiet",
    ]


def train_here(args, **extra_callbacks):
    """A single-process run of the same command line, in this process (default strategy)."""
    from unet_tf.training.run import train

    return train(config_from_args(build_parser().parse_args(args)), verbose=0, **extra_callbacks)


def weights(path):
    import keras

    import unet_tf  # noqa: F401

    return keras.models.load_model(path, compile=False).get_weights()


def max_difference(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(weights(a), weights(b)))


def history(run):
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def assert_same_history(a, b, tol=1e-4):
    ra, rb = history(a), history(b)
    assert len(ra) == len(rb) and set(ra[0]) == set(rb[0])
    for x, y in zip(ra, rb):
        for key in x:
            assert float(x[key]) == pytest.approx(float(y[key]), abs=tol), key


@pytest.fixture(scope="module")
def reference(twin_data, tmp_path_factory):
    """Single process, global batch 2 (the workers' 2 x 1), and a batch-1 run for contrast."""
    root = tmp_path_factory.mktemp("reference")
    t0 = time.perf_counter()
    train_here(twin_args(twin_data) + ["--strategy", "none", "--batch-size", "2", "--out", str(root / "b2")])
    train_here(twin_args(twin_data) + ["--strategy", "none", "--batch-size", "1", "--out", str(root / "b1")])
    print(f"reference runs: {time.perf_counter() - t0:.1f} s")
    return root


def subprocess_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def wait_all(procs, timeout=TIMEOUT):
    """(returncode, output) of every process; all are killed if one runs past ``timeout``."""
    deadline = time.monotonic() + timeout
    results = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((p.returncode, out))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        tails = "\n---\n".join((p.communicate()[0] or "")[-3000:] for p in procs)
        pytest.fail(f"distributed run still going after {timeout} s (hang?):\n{tails}")
    return results


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_two_workers(args, outs, tmp_dirs):
    """``train.py --strategy multiworker`` as workers 0 and 1 of a loopback cluster."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    procs = []
    for i in range(2):
        tmp_dirs[i].mkdir(parents=True, exist_ok=True)
        env = subprocess_env(
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}), TMPDIR=str(tmp_dirs[i])
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(REPO / "train.py"), *args, "--strategy", "multiworker", "--out", str(outs[i])],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    results = wait_all(procs)
    for i, (code, out) in enumerate(results):
        assert code == 0, f"worker {i} failed:\n{out[-4000:]}"
    return [out for _, out in results]


@pytest.mark.slow  # a TensorFlow subprocess with two logical CPUs
def test_mirrored_on_two_logical_cpus_matches_one_device(twin_data, reference, tmp_path):
    """MirroredStrategy over CPU:0 and CPU:1 (logical devices must exist before TensorFlow starts)."""
    script = tmp_path / "mirrored.py"
    script.write_text(f"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
from unet_tf.training.distribute import make_strategy
from unet_tf.training.losses import WeightedBCE
from unet_tf.training.metrics import DiceScore
from unet_tf.cli.train import build_parser, config_from_args
from unet_tf.training.run import train

# (1) model.fit under MirroredStrategy, a tiny model without BatchNormalization, plain SGD
strategy = make_strategy("mirrored")
rng = np.random.default_rng(0)
x = rng.random((8, 16, 16, 1)).astype("float32")
y = (rng.random((8, 16, 16, 1)) > 0.6).astype("float32")

def fit(scope):
    keras.utils.set_random_seed(1)
    with scope:
        inputs = keras.Input((None, None, 1))
        h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
        model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(h))
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=WeightedBCE(pos_weight=2.0), metrics=[DiceScore(2)])
    start = model.get_weights()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)  # global batch 4: 2 per replica, 2 steps
    logs = model.fit(ds, epochs=1, verbose=0, shuffle=False).history
    return start, model.get_weights(), logs

start, w_one, logs_one = fit(tf.distribute.get_strategy().scope())
_, w_two, logs_two = fit(strategy.scope())
fit_diff = max(float(np.abs(a - b).max()) for a, b in zip(w_one, w_two))
moved = max(float(np.abs(a - b).max()) for a, b in zip(w_one, start))

# (2) train() under --strategy mirrored: 2 replicas x batch 1
args = {json.dumps(twin_args(twin_data))} + ["--strategy", "mirrored", "--batch-size", "1", "--out", sys.argv[1]]
summary = train(config_from_args(build_parser().parse_args(args)), verbose=0).to_dict()
print("RESULT " + json.dumps({{
    "replicas": strategy.num_replicas_in_sync, "fit_diff": fit_diff, "moved": moved,
    "loss": [logs_one["loss"][0], logs_two["loss"][0]], "dice": [logs_one["dice"][0], logs_two["dice"][0]],
    "summary": summary,
}}))
""")
    out_dir = tmp_path / "mirrored"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out_dir)],
        cwd=REPO,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    [(code, out)] = wait_all([proc])
    print(f"mirrored subprocess: {time.perf_counter() - t0:.1f} s")
    assert code == 0, out[-4000:]
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    assert result["replicas"] == 2
    assert result["fit_diff"] < 1e-5 < 1e-3 < result["moved"]
    assert result["loss"][0] == pytest.approx(result["loss"][1], abs=1e-5)
    assert result["dice"][0] == pytest.approx(result["dice"][1], abs=1e-6)

    summary = result["summary"]
    assert summary["distribute"] == {"strategy": "mirrored", "replicas": 2, "global_batch_size": 2, "workers": 1}
    assert RUN_FILES <= {p.name for p in out_dir.iterdir()}
    assert_same_history(out_dir, reference / "b2")
    assert max_difference(out_dir / "last.keras", reference / "b2" / "last.keras") < 1e-4


@pytest.mark.slow  # two TensorFlow processes on a loopback cluster
def test_two_workers_resume_from_the_chiefs_backup_and_train_like_one_process(twin_data, reference, tmp_path):
    """The chief alone holds the backup of an interrupted run; both workers continue from it and
    end where one process with the same global batch does (merges the former fresh-start and
    resume tests: one two-worker launch instead of two, every assertion kept)."""
    import keras

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_here(
            twin_args(twin_data) + ["--strategy", "none", "--batch-size", "2", "--out", str(run)],
            extra_callbacks=[Interrupt()],
        )
    assert (run / "backup").is_dir() and [int(r["epoch"]) for r in history(run)] == [0]

    outs = [run, tmp_path / "worker1"]
    scratch = [tmp_path / "tmp0", tmp_path / "tmp1"]
    t0 = time.perf_counter()
    logs = run_two_workers(twin_args(twin_data) + ["--batch-size", "1", "--resume"], outs, scratch)
    print(f"two workers, resumed: {time.perf_counter() - t0:.1f} s")
    assert not (run / "backup").exists()

    # only the chief wrote a run folder; the other worker's scratch folder is gone
    assert RUN_FILES <= {p.name for p in outs[0].iterdir()}
    assert not outs[1].exists() and not any(scratch[1].iterdir())
    assert "worker 1 done; the chief writes the run folder" in logs[1]
    summary = json.loads((outs[0] / "summary.json").read_text())
    assert summary["distribute"] == {"strategy": "multiworker", "replicas": 2, "global_batch_size": 2, "workers": 2}
    assert [int(r["epoch"]) for r in history(outs[0])] == [0, 1, 2]

    # same losses, validation scores and weights (optimizer state came back on both workers) as one
    # process with the same global batch: epochs 1 and 2 averaged the gradients over both workers
    ref = reference / "b2"
    assert_same_history(outs[0], ref)
    assert summary["best_epoch"] == json.loads((ref / "summary.json").read_text())["best_epoch"]
    for name in ("best.keras", "last.keras"):
        assert max_difference(outs[0] / name, ref / name) < 1e-4
    assert max_difference(outs[0] / "last.keras", reference / "b1" / "last.keras") > 1e-3

    # the chief's model predicts, in two shards that share one output folder
    from unet_tf.cli.predict import main as predict_main

    pred = tmp_path / "pred"
    for shard in ("0/2", "1/2"):
        assert (
            predict_main(
                [
                    "--weights",
                    str(outs[0] / "best.keras"),
                    "--input",
                    str(twin_data / "images"),
                    "--labels",
                    str(twin_data / "masks"),
                    "--out",
                    str(pred),
                    "--tile",
                    "64",
                    "--overlap",
                    "16",
                    "--shard",
                    shard,
                    "--no-overlay",
                ]
            )
            == 0
        )
    names = {p.name for p in pred.iterdir()}
    assert {f"im{i}_mask.tif" for i in range(3)} <= names
    assert {"metrics.shard-0-of-2.csv", "metrics.shard-1-of-2.csv", "objects.shard-1-of-2.csv"} <= names
    assert "metrics.csv" not in names
    shards = []
    for s in (0, 1):
        with open(pred / f"metrics.shard-{s}-of-2.csv") as f:
            shards.append({r["image"] for r in csv.DictReader(f)} - {"mean", "all"})
    assert shards == [{"im0", "im2"}, {"im1"}]
