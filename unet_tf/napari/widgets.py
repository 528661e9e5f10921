"""The two dock widgets, a thin Qt layer (magicgui) over :mod:`unet_tf.napari.logic`.

* :class:`SegmentWidget`: a model and an image layer in, a Labels layer (and
  optionally the probabilities) out, segmented in a thread worker with a
  progress bar, so the viewer stays responsive.
* :class:`RetrainWidget`: *Add to training set* writes the image and the
  corrected labels of a segmented Labels layer into a training folder;
  *Fine-tune* runs :func:`unet_tf.training.corrections.finetune_on_corrections`
  from the layer's model on every collected pair (step and time budget,
  progress, cancel), then re-segments the layer with the new model and shows
  the before / after score on the held-aside pairs.

The widgets share nothing but the Labels layer: its ``metadata["unet_tf"]``
names the model, the image layer and the settings it was segmented with; and
the model process (:func:`unet_tf.napari.worker.shared_worker`): napari's
process never imports TensorFlow, a child process runs every model job.
Every error becomes one line in the widget's status (:func:`logic.message`);
the viewer keeps running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QSizePolicy

from unet_tf.config import PredictConfig
from unet_tf.errors import UserInputError
from unet_tf.napari import logic, worker

POLL_MS = 150  # how often the main thread shows a worker's progress and log lines


class JobWidget(Container):
    """A Container that runs one job at a time in a thread worker and shows its progress and last log line.

    ``run_job(fn, on_done)``: ``fn(progress, log)`` runs in the worker; ``progress(done, total)`` and
    ``log(line)`` may be called from there (the main thread polls them); ``on_done(value)`` runs in the main
    thread with what ``fn`` returned. An exception in ``fn`` becomes one status line.
    """

    def __init__(self, viewer: Any, widgets: list):
        self.status = Label(value="")
        self.progress = ProgressBar(value=0, min=0, max=1, visible=False)
        self.viewer, self.worker = viewer, None  # before the widgets: their choices read the viewer
        self.model_worker = worker.shared_worker()
        super().__init__(widgets=[*widgets, self.progress, self.status])
        wrap(self.status)
        self.model_worker.attach()
        model_worker = self.model_worker  # not self: the callback outlives the Qt widget
        self.native.destroyed.connect(lambda *_: model_worker.detach())
        self.reset_choices()
        self._shown = self._progress = (0, 0)
        self._line = ""
        self._timer = QTimer(self.native)
        self._timer.timeout.connect(self._poll)

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def say(self, line: str) -> None:
        self._line = line
        self.status.value = line

    def _poll(self) -> None:
        if self._progress != self._shown and self._progress[1]:
            self.progress.max, self.progress.value = self._progress[1], self._progress[0]
            self._shown = self._progress
        if self.status.value != self._line:
            self.status.value = self._line

    def _set_progress(self, done: int, total: int) -> None:
        self._progress = (done, total)

    def _log(self, line: str) -> None:
        self._line = str(line).strip().splitlines()[-1][:300] if str(line).strip() else self._line

    def run_job(self, fn: Callable, on_done: Callable[[Any], None]) -> None:
        from napari.qt.threading import create_worker

        if self.busy:
            self.say("busy: wait for the running job (or cancel it)")
            return

        def job():
            try:
                return True, fn(self._set_progress, self._log)
            except Exception as exc:  # every failure is one line in the widget, never a traceback
                return False, logic.message(exc)

        def finished(outcome):
            ok, value = outcome
            self.worker = None
            self._timer.stop()
            self.progress.visible = False
            if not ok:
                self.say(value)
                return
            try:
                on_done(value)
            except Exception as exc:
                self.say(logic.message(exc))

        self._progress = self._shown = (0, 0)
        self.progress.value, self.progress.visible = 0, True
        self.worker = create_worker(job, _start_thread=False)
        self.worker.returned.connect(finished)
        self._timer.start(POLL_MS)
        self.worker.start()

    def layer(self, name: str | None, kind: str):
        """The viewer's layer ``name`` of type ``kind`` (``Image``, ``Labels``); UserInputError when there is none."""
        from napari import layers

        if name and name in self.viewer.layers and isinstance(self.viewer.layers[name], getattr(layers, kind)):
            return self.viewer.layers[name]
        raise UserInputError(f"no {kind.lower()} layer chosen{f' ({name} is gone)' if name else ''}")

    def layer_names(self, kind: str) -> list[str]:
        from napari import layers

        viewer = vars(self).get("viewer")  # None while the widgets are made (their choices are asked at once)
        return [] if viewer is None else [x.name for x in viewer.layers if isinstance(x, getattr(layers, kind))]

    def show_layers(self, layer_data: list[tuple]) -> None:
        """Add each (data, kwargs, type) as a layer, or replace the data and metadata of the layer of that name."""
        for data, kwargs, kind in layer_data:
            name = kwargs["name"]
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                layer.data, layer.scale = data, kwargs["scale"]
                layer.metadata = {**layer.metadata, **kwargs.get("metadata", {})}
            else:
                getattr(self.viewer, f"add_{kind}")(data, **kwargs)


def wrap(label: Label) -> None:
    """Long lines (paths) wrap instead of widening the dock over the canvas; the line takes the dock's width."""
    label.native.setWordWrap(True)
    label.native.setMinimumWidth(1)
    label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    label.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)


def _unset(path: Any) -> bool:
    return path is None or str(path) in ("", ".")


class SegmentWidget(JobWidget):
    """Segment an image layer with a unet_tf model (``predict_image``, as ``predict.py``)."""

    def __init__(self, napari_viewer: Any):
        self.runs_folder = FileEdit(mode="d", label="runs folder", value="")
        self.model = ComboBox(label="model", choices=self._model_choices)
        self.model_file = FileEdit(mode="r", label="or model file", filter="*.keras *.onnx", value="")
        self.image = ComboBox(label="image", choices=lambda _: self.layer_names("Image"))
        self.tile = SpinBox(label="tile", value=512, min=32, max=8192, step=32)
        self.overlap = SpinBox(label="overlap", value=64, min=0, max=1024, step=8)
        self.tta = CheckBox(label="test-time augmentation", value=False)
        self.threshold = FloatSpinBox(label="threshold", value=0.5, min=0.01, max=0.99, step=0.05)
        self.min_size = SpinBox(label="min size (px; -1: the model's)", value=-1, min=-1, max=100000)
        self.diameter = FloatSpinBox(label="diameter (px; 0: the model's scale or estimate)", value=0, min=0, max=1e4)
        self.split_touching = CheckBox(label="split touching objects", value=False)
        self.probabilities = CheckBox(label="add probabilities", value=False)
        self.run = PushButton(text="Segment")
        settings = [self.tile, self.overlap, self.tta, self.threshold, self.min_size, self.diameter]
        super().__init__(
            napari_viewer,
            [self.runs_folder, self.model, self.model_file, self.image, *settings]
            + [self.split_touching, self.probabilities, self.run],
        )
        self.runs_folder.changed.connect(lambda _: self.model.reset_choices())
        self.run.changed.connect(lambda _: self.segment())
        self.viewer.layers.events.inserted.connect(lambda _: self.image.reset_choices())
        self.viewer.layers.events.removed.connect(lambda _: self.image.reset_choices())

    def _model_choices(self, _widget=None) -> list[tuple[str, str]]:
        folder = None if _unset(self.runs_folder.value) else self.runs_folder.value
        return list(logic.model_choices(folder).items())

    def chosen_model(self) -> str:
        """The model file if one is set, else the chosen bundled name or run; UserInputError when none is."""
        if not _unset(self.model_file.value):
            return str(self.model_file.value)
        if self.model.value:
            return str(self.model.value)
        raise UserInputError("no model: choose a bundled model, a runs folder holding best.keras, or a file")

    def config(self, pixel_size: float | None = None) -> PredictConfig:
        return logic.predict_config(
            tile=self.tile.value,
            overlap=self.overlap.value,
            tta=self.tta.value,
            threshold=self.threshold.value,
            min_size=self.min_size.value,
            diameter=self.diameter.value,
            split_touching=self.split_touching.value,
            pixel_size=pixel_size,
        )

    def segment(self) -> None:
        """Segment the chosen image layer in a thread worker; the Labels layer appears when it is done."""
        try:
            layer = self.layer(self.image.value, "Image")
            image = logic.gray_plane(layer.data, layer.rgb, layer.name)
            pixel_size = logic.pixel_size_for(layer.source.path, layer.scale)
            config, choice = self.config(pixel_size), self.chosen_model()
        except Exception as exc:
            self.say(logic.message(exc))
            return
        name, scale = layer.name, tuple(layer.scale[-2:]) if pixel_size is None else (pixel_size, pixel_size)
        if pixel_size is not None and tuple(layer.scale[-2:]) == (1.0, 1.0):
            layer.scale = scale  # the image takes its pixel size too, so both layers overlay
        self.say(f"segmenting {name} with {choice} ...")

        def work(progress, log):
            return self.model_worker.segment(choice, image, config, name, progress=progress)

        def done(seg):
            meta = logic.layer_meta(choice, name, seg.kind, config, pixel_size)
            self.show_layers(logic.segmentation_layers(seg, name, scale, meta, self.probabilities.value))
            self.say(f"{name}: {seg.labels.max()} {'objects' if seg.kind == 'instances' else 'as classes'} ({choice})")

        self.run_job(work, done)


class RetrainWidget(JobWidget):
    """Collect corrected labels into a training folder and fine-tune the layer's model on them."""

    def __init__(self, napari_viewer: Any):
        self.labels_layer = ComboBox(label="labels", choices=lambda _: self.layer_names("Labels"))
        self.folder = FileEdit(mode="d", label="training folder", value="")
        self.replace = CheckBox(label="replace a pair of the same name", value=False)
        self.add = PushButton(text="Add to training set")
        self.steps = SpinBox(label="steps", value=100, min=1, max=100000)
        self.minutes = FloatSpinBox(label="time budget (min; 0: none)", value=0, min=0, max=10000)
        self.finetune = PushButton(text="Fine-tune")
        self.cancel = PushButton(text="Cancel")
        self.model_line = Label(value="model: the layer's")
        super().__init__(
            napari_viewer,
            [self.labels_layer, self.folder, self.replace, self.add, self.steps, self.minutes]
            + [self.finetune, self.cancel, self.model_line],
        )
        wrap(self.model_line)
        self.last_run: Any = None  # the FinetuneResult of the last fine-tuning
        self.add.changed.connect(lambda _: self.add_pair())
        self.finetune.changed.connect(lambda _: self.start_finetune())
        self.cancel.changed.connect(lambda _: self.model_worker.cancel())
        self.viewer.layers.events.inserted.connect(lambda _: self.labels_layer.reset_choices())
        self.viewer.layers.events.removed.connect(lambda _: self.labels_layer.reset_choices())

    def training_folder(self) -> Path:
        if _unset(self.folder.value):
            raise UserInputError("no training folder: choose where the corrected pairs go")
        return Path(self.folder.value)

    def corrected(self) -> tuple[Any, dict, Any, Any]:
        """(Labels layer, its segmentation record, the image layer, the gray image) of the chosen labels."""
        layer = self.layer(self.labels_layer.value, "Labels")
        meta = layer.metadata.get(logic.METADATA_KEY)
        if not meta:
            raise UserInputError(f"layer '{layer.name}': not made by the Segment widget (its model is unknown)")
        image_layer = self.layer(meta["image"], "Image")
        return layer, meta, image_layer, logic.gray_plane(image_layer.data, image_layer.rgb, image_layer.name)

    def add_pair(self) -> None:
        """Write the image and its corrected labels into the training folder (a new name unless replacing)."""
        try:
            layer, meta, image_layer, image = self.corrected()
            labels = logic.check_labels(layer.data, image, layer.name)
            folder = self.training_folder()
            paths = logic.add_pair(
                folder,
                image_layer.name,
                image,
                labels,
                meta["kind"] == "instances",
                meta["pixel_size"],
                self.replace.value,
            )
        except Exception as exc:
            self.say(logic.message(exc))
            return
        count = len(list((folder / "images").glob("*.tif")))
        self.say(f"added {paths[0].relative_to(folder)} + {paths[1].relative_to(folder)} ({count} pairs in {folder})")

    def start_finetune(self) -> None:
        """Fine-tune the layer's model on every collected pair in a worker, then re-segment the layer with it."""
        try:
            layer, meta, image_layer, image = self.corrected()
            folder = self.training_folder()
        except Exception as exc:
            self.say(logic.message(exc))
            return
        steps, minutes, config = self.steps.value, self.minutes.value or None, logic.config_from_meta(meta)
        self.say(f"fine-tuning {meta['model']} ...")

        def work(progress, log):
            images, labels, _ = logic.read_pairs(folder)
            return self.model_worker.finetune(
                meta["model"], images, labels, image, config, image_layer.name, progress=progress, log=log,
                out=logic.new_run_dir(folder), steps=steps, max_minutes=minutes,
            )  # fmt: skip

        self.run_job(work, lambda run: self._finished(layer, meta, run))

    def _finished(self, layer: Any, meta: dict, run: Any) -> None:
        """Show the fine-tuned run: the layer re-segmented by its model, which the layer now names."""
        self.last_run = run
        layer.data = run.segmentation.labels
        layer.metadata = {**layer.metadata, logic.METADATA_KEY: {**meta, "model": str(run.model)}}
        self.model_line.value = f"model: {run.model}"
        stopped = " (cancelled)" if run.stopped == "callback" else ""
        self.say(f"fine-tuned on {run.n_train} pair(s){stopped}; {run.scores}; re-segmented with {run.run_dir.name}")
