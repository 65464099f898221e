"""``predict``, ``correct`` and ``repair`` on files: the library API under the CLI commands.

::

    import topofix
    report = topofix.correct_files(["scans/"], "unet.pt", ["2=1,1|0,0"], "fixed/",
                                   inference=topofix.Inference(per_slice="z"))
    report.exit_status, [c.status for c in report.cases]

All three run on :func:`topofix.batch.run_batch` (journal, lock, resume, verified
writes, one failing case never stops the batch) and return its typed
:class:`topofix.batch.BatchReport`; :func:`write_reports` writes it as JSON and
CSV. The CLI only parses options, shows progress and prints. Scale options, the
same for all three: ``shard=(K, N)`` (part K of N of the sorted inputs),
``workers=N`` (N cases at once in forked processes), ``threads=`` (per process),
``cluster="local:N" | "tcp://host:8786"`` (a Dask cluster; the model must be a
file, inputs and outputs on a file system every worker sees).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topofix.batch import BatchReport, CaseRecord, RunInfo, model_identity, run_batch
from topofix.mask_format import MaskFormat, mask_format
from topofix.outputs import CaseOutputs, probability_labels

__all__ = ["CSV_FIELDS", "CorrectRunner", "Inference", "PredictRunner", "RepairRunner", "correct_files", "predict_files", "repair_files", "report_rows", "write_reports"]


@dataclass(frozen=True)
class Inference:
    """How the network runs on a scan, built once and passed as one value.

    ``contract``: a :class:`topofix.models.contract.ModelContract` (normalisation,
    activation, pad multiple; ``None``: detected). ``nnunet``: a
    :class:`topofix.models.nnunet.NnUNetSelection` (folds, configuration,
    checkpoint) for an nnU-Net model folder, whose own plans then decide the
    rest. The rest as in :func:`topofix.predict`.
    """

    contract: Any = None
    per_slice: str | None = None
    patch_size: tuple[int, ...] | None = None
    overlap: float = 0.5
    device: str = "auto"
    threshold: float = 0.5
    nnunet: Any = None

    def describe(self) -> dict[str, Any]:
        contract = None if self.contract is None else dataclasses.asdict(self.contract)
        extra = {} if self.nnunet is None else {"nnunet": self.nnunet.describe()}
        return {**extra, "contract": contract, "per_slice": self.per_slice,
                "patch_size": None if self.patch_size is None else list(self.patch_size),
                "overlap": self.overlap, "device": self.device, "threshold": self.threshold}


def _is_nnunet(model: Any) -> bool:
    """An nnU-Net model folder (path) or a loaded :class:`topofix.models.nnunet.NnUNetModel`."""
    if isinstance(model, (str, os.PathLike)):
        from topofix.models.nnunet import is_nnunet_folder

        return is_nnunet_folder(model)
    return getattr(model, "kind", None) == "nnunet"


def _load(model: Any, device: str, nnunet: Any = None):
    """(module, path or None, warnings, resolved device) of a path, a LoadedModel or a module; an
    nnU-Net model folder gives its :class:`topofix.models.nnunet.NnUNetModel` as the module."""
    import warnings

    from topofix.models.inference import resolve_device
    from topofix.models.loading import LoadedModel, load_model

    dev = resolve_device(device)
    if nnunet is not None and not _is_nnunet(model):
        from topofix.errors import InputError

        raise InputError(os.fspath(model) if isinstance(model, (str, os.PathLike)) else "<model>",
                         "--folds, --configuration, --checkpoint and --disable-tta apply to nnU-Net model folders "
                         "only (a folder with plans.json and dataset.json)")
    if _is_nnunet(model) and isinstance(model, (str, os.PathLike)):
        from topofix.models.nnunet import load_nnunet

        loaded_nn = load_nnunet(model, nnunet, device=dev)
        return loaded_nn, os.fspath(model), list(loaded_nn.warnings), dev
    if _is_nnunet(model):
        return model, model.path, list(model.warnings), dev
    if isinstance(model, (str, os.PathLike)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = load_model(model, device=str(dev))
        return loaded.module, os.fspath(model), list(loaded.warnings), dev
    if isinstance(model, LoadedModel):
        return model.module, model.path, list(model.warnings), dev
    return model, None, [], dev


def _nnunet_ignored(inference: Inference) -> list[str]:
    """Options an nnU-Net model ignores (its plans decide them), as one warning."""
    import dataclasses as dc

    from topofix.models.contract import ModelContract

    ignored = []
    contract = inference.contract
    if contract is not None:
        default = ModelContract()
        for name, flag in (("normalize", "--normalize"), ("activation", "--activation"),
                           ("pad_multiple", "--pad-multiple")):
            if getattr(contract, name) != getattr(default, name) and dc.is_dataclass(contract):
                ignored.append(flag)
    if inference.patch_size is not None:
        ignored.append("--patch-size")
    if inference.overlap != 0.5:
        ignored.append("--overlap")
    if not ignored:
        return []
    return [f"{', '.join(ignored)} ignored: the nnU-Net plans decide normalisation, patch size and the rest"]


def _check_finite(probabilities, path: str) -> None:
    import numpy as np

    from topofix.models.inference import InferenceError

    if not np.isfinite(probabilities).all():
        raise InferenceError(f"{path}: the network's output contains NaN or Inf (no mask written)")


# ----------------------------------------------------------------------------------------------
# Runners: one case of predict / correct / repair, as a picklable value
# ----------------------------------------------------------------------------------------------
# What a case needs travels as plain values (the model's *path*, the priors, the settings): a
# runner can be pickled and shipped to another process or machine (a Dask worker), which loads the
# network once (:func:`_network`). In this process (sequential, or forked --workers) the network the
# batch loaded up front rides along in ``module`` and is never pickled.
_NETWORKS: dict[tuple[str, str, str], Any] = {}
"""(model path, sha256, device) -> loaded module, in a process that received runners without one."""


def _model_identity(path: str | None, nnunet: Any = None) -> tuple[str, str]:
    """(path, sha256) of the model: a file's content hash, or for an nnU-Net folder the hash of its plans,
    dataset.json and the checkpoints used (:func:`topofix.models.nnunet.model_sha256`)."""
    if path is not None and _is_nnunet(path):
        from topofix.models.nnunet import model_sha256

        return os.fspath(path), model_sha256(path, nnunet)
    return model_identity(path)


def _network(path: str, sha256: str, device: Any, nnunet: Any = None):
    """The network at ``path`` on ``device``, loaded once per process; the file must still be the one
    the batch was started with (a worker on another machine reads it through the shared file system)."""
    import warnings

    from topofix.errors import InputError
    from topofix.models.loading import load_model

    # an nnU-Net model's run options (mirroring, step) live in the loaded model: part of the key
    key = (path, sha256 if nnunet is None else f"{sha256}:{nnunet.tta}:{nnunet.tile_step_size}", str(device))
    module = _NETWORKS.get(key)
    if module is None:
        if sha256 and _model_identity(path, nnunet)[1] != sha256:
            raise InputError(path, "is not the model file the batch was started with (changed, or another "
                                   "file at that path on this worker)")
        if _is_nnunet(path):
            from topofix.models.nnunet import load_nnunet

            module = _NETWORKS[key] = load_nnunet(path, nnunet, device=device)
            return module
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = _NETWORKS[key] = load_model(path, device=str(device)).module
    return module


@dataclass(frozen=True)
class _NetworkRunner:
    model_path: str | None
    model_sha256: str
    inference: Inference
    device: str | None
    """The device the batch resolved; ``None``: resolve ``inference.device`` where the case runs."""
    module: Any = field(default=None, compare=False, repr=False)
    """The loaded network, in the process that loaded it (never pickled: see :meth:`portable`)."""

    def network(self):
        from topofix.models.inference import resolve_device

        dev = resolve_device(self.device or self.inference.device)
        if self.module is not None:
            return self.module, dev
        if self.model_path is None:
            raise ValueError("this runner has no network (an in-memory model cannot leave its process)")
        return _network(self.model_path, self.model_sha256, dev, self.inference.nnunet), dev

    def portable(self):
        """This runner without the in-memory network and callbacks, for another process or machine."""
        if self.model_path is None:
            raise ValueError("a cluster needs the model as a file path (an in-memory model cannot be "
                             "shipped to the workers)")
        changes: dict[str, Any] = {"module": None, "device": None}
        if hasattr(self, "on_step"):
            changes["on_step"] = None
        return dataclasses.replace(self, **changes)

    def __getstate__(self):  # an in-memory module is never pickled
        state = dict(self.__dict__)
        state["module"] = None
        if "on_step" in state:
            state["on_step"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)


def _same_grid(labels: Any, image: Any, input_path: str) -> None:
    """nnU-Net's reader must see the voxel grid topofix's reader sees (the mask takes the input's geometry)."""
    from topofix.errors import InputError

    if tuple(labels.shape) != tuple(image.array.shape):
        raise InputError(input_path, f"nnU-Net's reader gives a {tuple(labels.shape)} grid, topofix's a "
                                     f"{tuple(image.array.shape)} one (a reorienting image reader?): not supported")


def _nnunet_predict(model: Any, input_path: str, image: Any, plan: CaseOutputs, may_overwrite: bool,
                    written: list[Path], save_probabilities: bool, masks: MaskFormat) -> dict[str, Any]:
    """One ``predict`` case with an nnU-Net model: nnUNetv2_predict's label map, written by topofix."""
    import numpy as np

    from topofix.io import write_image
    from topofix.models.nnunet import nnunet_predict

    pred = nnunet_predict(model, input_path, image_ndim=image.array.ndim, probabilities=save_probabilities)
    _same_grid(pred.labels, image, input_path)
    written.append(masks.write(plan.mask, pred.labels, image, may_overwrite))
    if pred.probabilities is not None:
        for label, channel in enumerate(pred.probabilities):
            written.append(write_image(plan.probability(label), channel, reference=image, overwrite=may_overwrite))
    folds = ",".join(model.folds)
    return {"labels_present": [int(v) for v in np.unique(pred.labels)], "warnings": pred.warnings,
            "contract": f"nnU-Net {model.configuration} (folds {folds}, {model.trainer_name}; nnU-Net's "
                        f"preprocessing, sliding window{' with mirroring' if model.selection.tta else ''} and export)",
            "activation": "softmax", "channels": int(model.label_manager.num_segmentation_heads)}


@dataclass(frozen=True)
class PredictRunner(_NetworkRunner):
    """One ``predict`` case: segment, write the mask (and probability maps)."""

    save_probabilities: bool = False
    masks: MaskFormat = MaskFormat()

    def __call__(self, input_path: str, plan: CaseOutputs, may_overwrite: bool, written: list[Path]):
        import numpy as np

        from topofix.io import read_image, write_image
        from topofix.prediction import predict

        module, dev = self.network()
        inference = self.inference
        image = read_image(input_path)
        if _is_nnunet(module):
            return _nnunet_predict(module, input_path, image, plan, may_overwrite, written, self.save_probabilities,
                                   self.masks)
        pred = predict(image, module, contract=inference.contract, per_slice=inference.per_slice,
                       patch_size=inference.patch_size, overlap=inference.overlap, device=dev,
                       threshold=inference.threshold)
        _check_finite(pred.probabilities, input_path)
        written.append(self.masks.write(plan.mask, pred.labels, image, may_overwrite))
        if self.save_probabilities:
            labels = probability_labels(pred.probabilities.shape[0], pred.contract.activation)
            for label, channel in zip(labels, pred.probabilities):
                written.append(write_image(plan.probability(label), channel, reference=image,
                                           overwrite=may_overwrite))
        return {"labels_present": [int(v) for v in np.unique(pred.labels)], "warnings": pred.warnings,
                "contract": pred.contract.describe(), "activation": pred.contract.activation,
                "channels": int(pred.probabilities.shape[0])}


@dataclass(frozen=True)
class CorrectRunner(_NetworkRunner):
    """One ``correct`` case: predict, fine-tune toward the priors, write the mask (and extras)."""

    priors: tuple[Any, ...] = ()
    settings: Any = None
    save_original: bool = False
    save_probabilities: bool = False
    on_step: Callable[[str, int, float, float], None] | None = field(default=None, compare=False, repr=False)
    masks: MaskFormat = MaskFormat()

    def __call__(self, input_path: str, plan: CaseOutputs, may_overwrite: bool, written: list[Path]):
        from topofix.correction import correct
        from topofix.io import read_image, write_image
        from topofix.models.contract import resolve_activation

        module, dev = self.network()
        inference, on_step = self.inference, self.on_step
        image = read_image(input_path)
        step = None if on_step is None else (lambda k, topo, sim: on_step(input_path, k, topo, sim))
        if _is_nnunet(module):
            from topofix.models.nnunet import nnunet_correct

            result = nnunet_correct(module, input_path, list(self.priors), image_ndim=image.array.ndim,
                                    settings=self.settings, per_slice=inference.per_slice, device=dev,
                                    callback=step)
            _same_grid(result.labels, image, input_path)
            inference = dataclasses.replace(inference, contract=None)
        else:
            result = correct(image, module, list(self.priors), settings=self.settings, contract=inference.contract,
                             per_slice=inference.per_slice, patch_size=inference.patch_size,
                             overlap=inference.overlap, device=str(dev), path=input_path, callback=step)
        written.append(self.masks.write(plan.mask, result.labels, image, may_overwrite))
        if self.save_original:
            written.append(self.masks.write(plan.original, result.original_labels, image, may_overwrite))
        n = result.probabilities.shape[0]
        activation = resolve_activation(getattr(inference.contract, "activation", "auto") or "auto", n)
        if self.save_probabilities:
            for label, channel in zip(probability_labels(n, activation), result.probabilities):
                written.append(write_image(plan.probability(label), channel, reference=image,
                                           overwrite=may_overwrite))
        return {**result.report.to_dict(), "activation": activation, "channels": int(n)}


@dataclass(frozen=True)
class RepairRunner:
    """One ``repair`` case: read a probability or label map, repair it toward the priors, write the mask."""

    priors: tuple[Any, ...]
    settings: Any
    per_slice: str | None = None
    save_original: bool = False
    save_probabilities: bool = False
    on_step: Callable[[str, int, float, float], None] | None = field(default=None, compare=False, repr=False)
    masks: MaskFormat = MaskFormat()

    def portable(self) -> RepairRunner:
        return dataclasses.replace(self, on_step=None)

    def __getstate__(self):
        return {**self.__dict__, "on_step": None}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __call__(self, input_path: str, plan: CaseOutputs, may_overwrite: bool, written: list[Path]):
        from topofix.errors import OutputError
        from topofix.io import write_image
        from topofix.map_repair import repair
        from topofix.maps import read_map_input

        source = read_map_input(input_path)
        reference = source.reference
        if reference.path and Path(reference.path).resolve() == plan.mask.resolve():
            raise OutputError(plan.mask, "is the segmentation this input is paired with; choose another "
                                         "output folder")
        on_step = self.on_step
        step = None if on_step is None else (lambda k, topo, sim: on_step(input_path, k, topo, sim))
        # a label map goes in as labels: repair then builds channels for the priors' labels only
        data, given = (source.labels, None) if source.kind == "labels" else (source.probabilities, source.labels)
        result = repair(data, list(self.priors), labels=given, settings=self.settings,
                        per_slice=self.per_slice, path=input_path, callback=step)
        written.append(self.masks.write(plan.mask, result.labels, reference, may_overwrite))
        if self.save_original:
            written.append(self.masks.write(plan.original, result.original_labels, reference, may_overwrite))
        if self.save_probabilities:
            names = result.channel_labels or list(range(result.probabilities.shape[0]))
            for label, channel in zip(names, result.probabilities):
                if label is None:  # a channel of several labels (a label map reduced to the priors')
                    continue
                written.append(write_image(plan.probability(label), channel, reference=reference,
                                           overwrite=may_overwrite))
        return {**result.report.to_dict(), "kind": source.kind}


def predict_files(
    inputs: Sequence[str | os.PathLike[str]],
    model: Any,
    output: str | os.PathLike[str],
    *,
    inference: Inference | None = None,
    save_probabilities: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    on_start: Callable[[str, int, int], None] | None = None,
    on_case: Callable[[CaseRecord], None] | None = None,
    shard: tuple[int, int] | None = None,
    workers: int = 1,
    threads: int | None = None,
    cluster: str | None = None,
    output_format: str = "auto",
    labels: Any = None,
) -> BatchReport:
    """Segment every input with ``model``; masks (and probability maps) in ``output``.

    Returns the batch's :class:`BatchReport` (each case's ``result``: the labels
    present, the warnings, the model contract used). ``output_format``: ``"auto"`` (the input's
    format; a DICOM series' mask as NIfTI), ``"nifti"`` or ``"dicom-seg"`` (a DICOM-SEG per series,
    segments named from ``labels``: a label table file or mapping; :mod:`topofix.mask_format`).
    """
    masks = mask_format(output_format, labels)
    inference = inference or Inference()
    module, path, model_warnings, dev = _load(model, inference.device, inference.nnunet)
    mpath, sha = _model_identity(path, inference.nnunet)
    if _is_nnunet(module):
        model_warnings += _nnunet_ignored(inference)
    run = RunInfo("predict", mpath, sha, [], {"inference": inference.describe(),
                                                "save_probabilities": save_probabilities, **_described(masks)})
    process = PredictRunner(path, sha, inference, str(dev), module, save_probabilities=save_probabilities,
                            masks=masks)

    report = run_batch(run, inputs, output, process, resume=resume, overwrite=overwrite,
                       on_start=on_start, on_case=on_case, shard=shard, workers=workers, threads=threads,
                       cluster=cluster, expand=masks.expand(), output_name=masks.output_name())
    report.warnings = model_warnings
    return report


def correct_files(
    inputs: Sequence[str | os.PathLike[str]],
    model: Any,
    priors: Sequence[Any],
    output: str | os.PathLike[str],
    *,
    settings: Any = None,
    inference: Inference | None = None,
    save_original: bool = False,
    save_probabilities: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    on_start: Callable[[str, int, int], None] | None = None,
    on_case: Callable[[CaseRecord], None] | None = None,
    on_step: Callable[[str, int, float, float], None] | None = None,
    shard: tuple[int, int] | None = None,
    workers: int = 1,
    threads: int | None = None,
    cluster: str | None = None,
    output_format: str = "auto",
    labels: Any = None,
) -> BatchReport:
    """Correct every input toward ``priors`` (see :func:`topofix.correct`); masks and reports in ``output``.

    Each case's ``result`` is its :class:`topofix.correction.CaseReport` as a dict. ``output_format``
    and ``labels`` as in :func:`predict_files`.
    """
    from topofix.correction import CorrectionSettings
    from topofix.priors import target_priors

    masks = mask_format(output_format, labels)
    settings = settings or CorrectionSettings()
    inference = inference or Inference()
    if inference.threshold != settings.threshold:
        settings = dataclasses.replace(settings, threshold=inference.threshold)
    prior_list = target_priors(priors, "correct")
    module, path, model_warnings, dev = _load(model, inference.device, inference.nnunet)
    mpath, sha = _model_identity(path, inference.nnunet)
    if _is_nnunet(module):
        model_warnings += _nnunet_ignored(inference)
    run = RunInfo("correct", mpath, sha, [p.spec for p in prior_list],
                  {**dataclasses.asdict(settings), "inference": inference.describe(),
                   "save_original": save_original, "save_probabilities": save_probabilities, **_described(masks)})

    process = CorrectRunner(path, sha, inference, str(dev), module, priors=tuple(prior_list), settings=settings,
                            save_original=save_original, save_probabilities=save_probabilities,
                            on_step=None if workers > 1 else on_step, masks=masks)

    report = run_batch(run, inputs, output, process, resume=resume, overwrite=overwrite,
                       on_start=on_start, on_case=on_case, shard=shard, workers=workers, threads=threads,
                       cluster=cluster, expand=masks.expand(), output_name=masks.output_name())
    report.warnings = model_warnings
    return report


def repair_files(
    inputs: Sequence[str | os.PathLike[str]],
    priors: Sequence[Any],
    output: str | os.PathLike[str],
    *,
    settings: Any = None,
    per_slice: str | None = None,
    save_original: bool = False,
    save_probabilities: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    on_start: Callable[[str, int, int], None] | None = None,
    on_case: Callable[[CaseRecord], None] | None = None,
    on_step: Callable[[str, int, float, float], None] | None = None,
    shard: tuple[int, int] | None = None,
    workers: int = 1,
    threads: int | None = None,
    cluster: str | None = None,
    output_format: str = "auto",
    labels: Any = None,
) -> BatchReport:
    """:func:`topofix.repair` on probability maps or label maps on disk (no network).

    Inputs (:func:`topofix.maps.read_map_input`): nnU-Net ``.npz`` beside its
    segmentation (the mask takes the segmentation's name and geometry),
    probability images, label maps. Each case's ``result`` is its
    :class:`topofix.correction.CaseReport` as a dict, with the input's ``kind``. ``output_format``:
    ``"auto"`` or ``"nifti"`` (``"dicom-seg"`` needs DICOM series inputs, which repair does not read).
    """
    from topofix.map_repair import MAP_SETTINGS
    from topofix.maps import expand_map_inputs, map_output_name
    from topofix.priors import target_priors

    masks = mask_format(output_format, labels)
    settings = settings or MAP_SETTINGS
    prior_list = target_priors(priors, "repair")
    run = RunInfo("repair", "", "", [p.spec for p in prior_list],
                  {**dataclasses.asdict(settings), "per_slice": per_slice, "save_original": save_original,
                   "save_probabilities": save_probabilities, **_described(masks)})

    process = RepairRunner(tuple(prior_list), settings, per_slice, save_original, save_probabilities,
                           on_step=None if workers > 1 else on_step, masks=masks)

    return run_batch(run, inputs, output, process, resume=resume, overwrite=overwrite, on_start=on_start,
                     on_case=on_case, expand=masks.expand(expand_map_inputs),
                     output_name=masks.output_name(map_output_name), shard=shard, workers=workers, threads=threads,
                     cluster=cluster)


def _described(masks: MaskFormat) -> dict[str, Any]:
    """The mask format in a run's settings; nothing for the default, so that the fingerprints of runs
    journaled before ``--output-format`` existed (and their ``--skip-existing``) still match."""
    return {} if masks == MaskFormat() else masks.describe()


# ----------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------
CSV_FIELDS = (
    "path", "key", "status", "prior", "expected", "betti_before", "betti_after", "met_before", "met_after",
    "failing_slices_before", "failing_slices_after", "absent", "absent_slices", "steps", "stop_reason",
    "chosen_step", "seconds", "changed_fraction", "dice_original_corrected", "topo_loss", "similarity_loss",
    "repaired", "repair_changed", "error",
)


def _fmt(values: Any) -> str:
    return "-" if values is None else ",".join(str(v) for v in values)


def report_rows(report: BatchReport) -> list[dict[str, Any]]:
    """CSV rows: one per case and prior (one per case without priors)."""
    rows = []
    for case in report.cases:
        r = case.result
        base = {k: r.get(k) for k in CSV_FIELDS if k in r and k != "priors"}
        base.update({"path": case.path, "key": case.key, "status": case.status, "error": case.error,
                     "seconds": r.get("seconds", case.seconds)})
        priors = r.get("priors") or []
        if not priors:
            rows.append(base)
            continue
        for prior in priors:
            row = dict(base)
            row.update({
                "prior": prior["prior"], "expected": _fmt(prior["expected"]),
                "betti_before": ";".join(_fmt(b) for b in prior["betti_before"]),
                "betti_after": ";".join(_fmt(b) for b in prior["betti_after"]),
                "met_before": prior["met_before"], "met_after": prior["met_after"],
                "failing_slices_before": " ".join(map(str, prior["failing_slices_before"])),
                "failing_slices_after": " ".join(map(str, prior["failing_slices_after"])),
                "absent": prior.get("absent", False),
                "absent_slices": " ".join(map(str, prior.get("absent_slices", []))),
            })
            rows.append(row)
    return rows


def write_reports(report: BatchReport, json_path: str | os.PathLike[str] | None,
                  csv_path: str | os.PathLike[str] | None = None, *, overwrite: bool = True) -> list[Path]:
    """Write the report as JSON (and CSV), atomically; returns the paths written."""
    import csv
    import io
    import json

    from topofix.atomic import atomic_write_text
    from topofix.journal import json_safe

    written = []
    if json_path is not None:
        text = json.dumps(json_safe(report.to_dict()), indent=2, allow_nan=False) + "\n"
        written.append(atomic_write_text(json_path, text, overwrite=overwrite))
    if csv_path is not None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(CSV_FIELDS), lineterminator="\n")
        writer.writeheader()
        for row in report_rows(report):
            writer.writerow({k: json_safe(row.get(k)) for k in CSV_FIELDS})
        written.append(atomic_write_text(csv_path, buffer.getvalue(), overwrite=overwrite))
    return written
