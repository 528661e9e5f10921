"""Bundled pretrained models: found by name wherever a model file is accepted (no model ships in the tests)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from _helpers import TEM_NAMES, TEM_VALUES

from unet_tf.errors import UserInputError, note_run
from unet_tf.models import bundled
from unet_tf.models.bundled import bundled_files, bundled_models, describe_bundled, resolve_weights


def make_bundle(root, model_file=None, **cards):
    """``root`` holding ``<name>.md`` (text) for each card, and ``<name>.keras`` (a copy of ``model_file``)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in cards.items():
        (root / f"{name}.md").write_text(text)
        if model_file is not None:
            shutil.copy(model_file, root / f"{name}.keras")
    return root


@pytest.fixture
def bundle(tmp_path, tem_model_file, monkeypatch):
    """The package's bundle folder replaced by one holding ``tiny`` (the session's untrained TEM model)."""
    root = make_bundle(tmp_path / "bundle", tem_model_file, tiny="# Tiny TEM model: untrained, for tests\n\nMore.\n")
    monkeypatch.setattr(bundled, "DEFAULT_ROOT", root)
    return root


# === The resolver (no TensorFlow) ===


def test_names_summaries_and_incomplete_pairs_ignored_with_a_note(tmp_path, capsys):
    root = make_bundle(tmp_path / "b", None, Beta="Beta: second\n", alpha="\n  alpha: first line  \nrest\n")
    for name in ("Beta", "alpha", "lonely"):
        (root / f"{name}.keras").write_bytes(b"x")
    (root / "README.md").write_text("# what goes here\n")
    (root / "orphan.md").write_text("a card without a model\n")
    with note_run() as notes:
        assert bundled_models(root) == {"Beta": "Beta: second", "alpha": "alpha: first line"}
    assert notes.counts == {
        "a bundled model card without its model file is ignored": 1,
        "a bundled model file without its model card (.md) is ignored": 1,
    }
    err = capsys.readouterr().err
    assert "orphan.md" in err and "lonely.keras" in err and "README" not in err
    assert bundled_models(tmp_path / "missing") == {} and bundled_files(tmp_path / "missing") == {}


def test_resolve_existing_file_wins_then_name_case_sensitive(tmp_path, monkeypatch):
    root = make_bundle(tmp_path / "b", None, nuclei="Nuclei\n")
    (root / "nuclei.keras").write_bytes(b"x")
    assert resolve_weights("nuclei", root) == root / "nuclei.keras"
    local = tmp_path / "here"
    local.mkdir()
    monkeypatch.chdir(local)
    (local / "nuclei").mkdir()  # a folder of that name is no model file: the bundled name still resolves
    assert resolve_weights("nuclei", root) == root / "nuclei.keras"
    (local / "own.keras").write_bytes(b"y")
    assert resolve_weights("own.keras", root) == Path("own.keras")
    (local / "nuclei").rmdir()
    (local / "nuclei").write_bytes(b"z")  # an existing file wins over the bundled name
    assert resolve_weights("nuclei", root) == Path("nuclei")
    with pytest.raises(UserInputError) as exc:
        resolve_weights("Nuclei", root)
    assert str(exc.value) == (
        "`model_file` Nuclei: no such weights file, and no bundled model of that name (bundled models: nuclei)"
    )


def test_unknown_name_without_bundled_models_says_none_are_installed(tmp_path):
    with pytest.raises(UserInputError, match=r"^`train.init_from` x: .*\(no bundled models are installed\)$"):
        resolve_weights("x", tmp_path, parameter="train.init_from")
    assert describe_bundled(tmp_path)[0].startswith("no bundled models are installed")


def test_the_package_folder_ships_no_model_yet():
    assert bundled.DEFAULT_ROOT.is_dir() and (bundled.DEFAULT_ROOT / "README.md").is_file()
    assert bundled.DEFAULT_ROOT.name == "bundled" and bundled.DEFAULT_ROOT.parent.name == "models"


# === Every entry point ===


def test_load_model_by_name(bundle, tem_model_file):
    import unet_tf
    from unet_tf.models.file import load_model_and_info

    by_name = unet_tf.load_model("tiny")
    by_path, info = load_model_and_info(tem_model_file)
    assert unet_tf.read_info(by_name) == info
    for a, b in zip(by_name.weights, by_path.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(UserInputError, match=r"`model_file` nope: .*\(bundled models: tiny\)"):
        unet_tf.load_model("nope")


def test_predict_cli_by_name_writes_the_same_mask_and_lists_models(bundle, tem_model_file, tmp_path, capsys):
    from unet_tf.cli.predict import main as predict_main

    image = tmp_path / "img.tif"
    tifffile.imwrite(image, np.random.default_rng(0).integers(0, 60000, (48, 40)).astype(np.uint16))
    common = ["--input", str(image), "--tile", "32", "--overlap", "8", "--no-overlay"]
    assert predict_main(["--weights", "tiny", "--out", str(tmp_path / "name"), *common]) == 0
    assert predict_main(["--weights", str(tem_model_file), "--out", str(tmp_path / "path"), *common]) == 0
    a = tifffile.imread(tmp_path / "name" / "img_mask.tif")
    np.testing.assert_array_equal(a, tifffile.imread(tmp_path / "path" / "img_mask.tif"))
    capsys.readouterr()
    assert predict_main(["--list-models"]) == 0
    assert capsys.readouterr().out == "tiny  Tiny TEM model: untrained, for tests\n"
    assert predict_main(["--weights", "nope", "--input", str(image), "--out", str(tmp_path / "x")]) == 2
    one_line = "error: --weights nope: no such weights file, and no bundled model of that name (bundled models: tiny)"
    assert capsys.readouterr().err == one_line + "\n"
    assert not (tmp_path / "x").exists()


def test_export_by_name(bundle, tem_model_file, tmp_path, capsys):
    from unet_tf.cli.export import main as export_main
    from unet_tf.export import load_for_export

    bare, info = load_for_export("tiny")
    bare_path, info_path = load_for_export(tem_model_file)
    x = np.random.default_rng(1).random((1, 32, 32, 1)).astype("float32")
    np.testing.assert_array_equal(bare(x).numpy(), bare_path(x).numpy())
    assert info == info_path
    assert export_main(["--weights", "nope", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --weights nope: no such weights file") and "(bundled models: tiny)" in err
    with pytest.raises(UserInputError, match=r"^`weights` nope: .*\(bundled models: tiny\)$"):
        load_for_export("nope")


def test_init_from_by_name(bundle, tem_model_file):
    import keras

    from unet_tf.models.file import load_model_and_info, read_info
    from unet_tf.training.finetune import init_from, parent_model_config

    assert parent_model_config("tiny") == parent_model_config(tem_model_file)
    parent, info = load_model_and_info(tem_model_file)
    keras.utils.set_random_seed(5)
    child = keras.models.clone_model(parent)  # same architecture, fresh weights
    lines = []
    record = init_from(child, "tiny", lines.append)
    assert record["parent"] == str((bundle / "tiny.keras").resolve()) and not record["head_replaced"]
    assert lines == [f"initialised all {record['copied_layers']} weighted layers from {bundle / 'tiny.keras'}"]
    for a, b in zip(child.weights, parent.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert read_info(child) == info
    with pytest.raises(UserInputError, match=r"^`train.init_from` nope: .*\(bundled models: tiny\)$"):
        init_from(child, "nope")


def tiny_tem_parent(path):
    """A base-4, depth-2 TEM model whose info records that architecture (train.init_from builds from it)."""
    import keras

    from unet_tf.config import ModelConfig
    from unet_tf.models import build_model
    from unet_tf.models.file import ModelInfo, attach_info

    keras.utils.set_random_seed(0)
    cfg = ModelConfig(base_filters=4, depth=2)
    info = ModelInfo(tuple(TEM_VALUES), tuple(TEM_NAMES), patch_size=64, size_divisor=4, model=cfg)
    attach_info(build_model(cfg, len(TEM_VALUES)), info).save(path)
    return path


def test_train_cli_init_from_name(tem_dir_factory, tmp_path, capsys, monkeypatch):
    from unet_tf.cli.train import main as train_main

    bundle = make_bundle(tmp_path / "bundle", tiny_tem_parent(tmp_path / "parent.keras"), tiny="Tiny\n")
    monkeypatch.setattr(bundled, "DEFAULT_ROOT", bundle)
    base = ["--dataset", "tem", "--data-dir", str(tem_dir_factory(3)), "--patch-size", "64", "--batch-size", "2"]
    base += ["--epochs", "1", "--steps-per-epoch", "1", "--quiet"]
    assert train_main([*base, "--out", str(tmp_path / "bad"), "--init-from", "nope"]) == 2
    assert "error: --init-from nope: no such weights file" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert train_main([*base, "--out", str(tmp_path / "run"), "--init-from", "tiny"]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["init_from"] == "tiny"
    assert json.dumps(config).count(str((bundle / "tiny.keras").resolve())) == 1  # the parent's resolved file


def test_app_model_list_offers_bundled_models_after_the_runs(bundle, tem_model_file, tmp_path):
    from unet_tf.app import logic

    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    shutil.copy(tem_model_file, run / "best.keras")
    entries = logic.find_models(tmp_path / "runs")
    assert [(e.run, e.summary) for e in entries] == [("r1", None), ("tiny", "Tiny TEM model: untrained, for tests")]
    assert entries[1].path == bundle / "tiny.keras"
    assert entries[1].label() == "tiny (bundled) · folder · 5 classes · Tiny TEM model: untrained, for tests"
    assert [e.run for e in logic.find_models(tmp_path / "missing")] == ["tiny"]
    assert logic.find_models(tmp_path / "missing", bundle_root=tmp_path / "none") == []


def test_bundle_model_writes_a_portable_float32_copy_and_its_card(tmp_path):
    from _helpers import save_model

    from unet_tf.models.bundling import bundle_model
    from unet_tf.models.file import load_model_and_info, read_info

    test_images = [(tmp_path / "img.tif", tmp_path / "mask.tif")]  # paths of the machine it was trained on
    tem_model_file = save_model(tmp_path / "best.keras", TEM_VALUES, TEM_NAMES, test_images=test_images)
    original, info = load_model_and_info(tem_model_file)
    assert info.test_images
    path = bundle_model(tem_model_file, "tem-tiny", "# Tiny TEM: untrained\n\nFor tests.", root=tmp_path / "b")
    assert path == tmp_path / "b" / "tem-tiny.keras"
    assert bundled_models(tmp_path / "b") == {"tem-tiny": "Tiny TEM: untrained"}
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["tem-tiny.keras", "tem-tiny.md"]
    copy = resolve_weights("tem-tiny", root=tmp_path / "b")
    model, copied = load_model_and_info(copy)
    assert copied.test_images == () and copied.data_dir is None
    assert copied.class_values == info.class_values and copied.normalize == info.normalize
    x = np.random.default_rng(0).random((1, 64, 64, 1)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), original.predict(x, verbose=0))
    assert read_info(model) == copied
    for bad in ("", "a/b", "README"):
        with pytest.raises(UserInputError, match="bundled"):
            bundle_model(tem_model_file, bad or "x", "" if not bad else "# card", root=tmp_path / "c")
