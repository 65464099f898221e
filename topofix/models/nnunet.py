"""nnU-Net v2 trained-model folders as topofix models (``-m Dataset001_X/nnUNetTrainer__nnUNetPlans__3d_fullres``).

Why a separate path instead of exporting the network to TorchScript: an nnU-Net
model is more than its network. Its prediction is nnU-Net's preprocessing (crop
to the non-zero region, transpose, resample to the plans' spacing, normalise),
a Gaussian sliding window with mirroring, an ensemble of folds (mean of the
logits) and nnU-Net's export (resample the logits back, argmax, uncrop,
transpose back). ``predict`` calls those same nnU-Net functions, so its label
maps are nnUNetv2_predict's; ``correct`` fine-tunes the network where it was
trained, in the preprocessed space, and exports through nnU-Net's own export,
so the corrected mask lands in the input's geometry.

* **A folder** is recognised by its ``plans.json`` and ``dataset.json`` (the
  trained-model folder), or by ``<trainer>__<plans>__<configuration>``
  subfolders holding them (the dataset's results folder: ``configuration``
  picks one).
* **Checkpoints are pickles**: ``torch.load(weights_only=True)`` with an
  explicit allow-list of the non-torch types nnU-Net stores (numpy scalars and
  dtypes in the training log); anything else is refused with a one-line
  message saying how to convert the file. Nothing is fully unpickled.
* **Folds** (ensembles): ``predict`` averages the folds' logits, as nnU-Net
  does. ``correct`` fine-tunes the *ensemble*: every fold's copy is trained
  together, the loss on the mean of their logits (the output that is written).
  Fine-tuning each fold alone against the prior would correct outputs nobody
  reads (a fold's mask may meet the prior while the mean does not, or the
  reverse); averaging the folds' weights is meaningless for independently
  trained networks.
* **Sliding window in correct**: the preprocessed image is padded with zeros
  up to the patch size where smaller (nnU-Net's padding), then topofix's
  windows of nnU-Net's patch size, step and Gaussian weighting run with
  gradients through every window; an image of one patch is one forward.

nnunetv2 is imported only here, and only when an nnU-Net folder is used:
without it, :func:`require_nnunetv2` raises "install topofix[nnunet]".
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from topofix.errors import InputError

__all__ = [
    "CHECKPOINT",
    "CONVERT_HINT",
    "INSTALL_HINT",
    "NnUNetModel",
    "NnUNetSelection",
    "allowed_globals",
    "is_nnunet_folder",
    "load_checkpoint",
    "load_nnunet",
    "nnunet_correct",
    "nnunet_predict",
    "require_nnunetv2",
]

CHECKPOINT = "checkpoint_final.pth"
INSTALL_HINT = "an nnU-Net model folder needs nnunetv2: install topofix[nnunet] (pip install 'topofix[nnunet]')"
CONVERT_HINT = (
    "if you trust the file, keep only what inference needs: python -c \"import torch; p='CHECKPOINT'; "
    "c=torch.load(p, weights_only=False); torch.save({'network_weights': c['network_weights'], "
    "'trainer_name': c['trainer_name'], 'init_args': {'configuration': c['init_args']['configuration']}, "
    "'inference_allowed_mirroring_axes': c.get('inference_allowed_mirroring_axes')}, p)\""
)


@dataclass(frozen=True)
class NnUNetSelection:
    """Which nnU-Net model to use and how to run it (CLI: nnU-Net's option names).

    Attributes
    ----------
    folds:
        Fold names (``"0"``, ``"all"``...); ``None``: every ``fold_*`` folder
        holding ``checkpoint`` except ``fold_all`` (nnUNetv2_predict's default).
    configuration:
        ``2d``, ``3d_fullres``... Needed only when ``-m`` is a results folder
        with several ``<trainer>__<plans>__<configuration>`` subfolders; else it
        must agree with the checkpoint's.
    checkpoint:
        File name in each fold folder (``-chk``).
    tta:
        Mirroring test-time augmentation (nnU-Net's default; ``--disable_tta``).
    tile_step_size:
        Sliding-window step as a fraction of the patch (``-step_size``).
    """

    folds: tuple[str, ...] | None = None
    configuration: str | None = None
    checkpoint: str = CHECKPOINT
    tta: bool = True
    tile_step_size: float = 0.5

    def describe(self) -> dict[str, Any]:
        return {"folds": None if self.folds is None else list(self.folds), "configuration": self.configuration,
                "checkpoint": self.checkpoint, "tta": self.tta, "tile_step_size": self.tile_step_size}


def _has_plans(folder: Path) -> bool:
    return (folder / "plans.json").is_file() and (folder / "dataset.json").is_file()


def _configuration_folders(folder: Path) -> list[Path]:
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []
    return [p for p in children if p.name.count("__") == 2 and _has_plans(p)]


def is_nnunet_folder(path: str | os.PathLike[str]) -> bool:
    """A trained-model folder (``plans.json`` + ``dataset.json``) or a results folder holding some."""
    folder = Path(path)
    return folder.is_dir() and (_has_plans(folder) or bool(_configuration_folders(folder)))


def require_nnunetv2(path: str | os.PathLike[str]) -> None:
    """Raise the one-line "install topofix[nnunet]" error when nnunetv2 cannot be imported."""
    try:
        import nnunetv2  # noqa: F401
    except ImportError:
        raise InputError(path, INSTALL_HINT) from None


def _model_folder(path: Path, configuration: str | None) -> Path:
    """The trained-model folder: ``path`` itself, or its subfolder for ``configuration``."""
    if _has_plans(path):
        return path
    found = _configuration_folders(path)
    names = ", ".join(p.name.rsplit("__", 1)[1] for p in found)
    if configuration is None:
        if len(found) == 1:
            return found[0]
        raise InputError(path, f"holds several nnU-Net configurations ({names}): choose one with --configuration")
    chosen = [p for p in found if p.name.rsplit("__", 1)[1] == configuration]
    if not chosen:
        raise InputError(path, f"has no nnU-Net configuration {configuration!r} (found: {names})")
    if len(chosen) > 1:
        raise InputError(path, f"holds configuration {configuration!r} for several trainers/plans "
                               f"({', '.join(p.name for p in chosen)}): give that folder as -m")
    return chosen[0]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"cannot read the JSON file ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(path, "is not a JSON object")
    return data


def _folds(folder: Path, selection: NnUNetSelection) -> list[str]:
    if selection.folds is not None:
        folds = [str(f) for f in selection.folds]
        for fold in folds:
            if fold != "all" and not fold.isdigit():
                raise InputError(folder, f"--folds {fold}: a fold is a number or 'all'")
            if not (folder / f"fold_{fold}" / selection.checkpoint).is_file():
                raise InputError(folder / f"fold_{fold}" / selection.checkpoint, "file does not exist")
        return folds
    found = sorted(
        (p.name[len("fold_"):] for p in folder.glob("fold_*")
         if p.name != "fold_all" and (p / selection.checkpoint).is_file()),
        key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0, f),
    )
    if not found:
        raise InputError(folder, f"no fold_*/{selection.checkpoint} in this nnU-Net model folder "
                                 "(use --folds all for fold_all, --checkpoint for another file name)")
    return found


# ----------------------------------------------------------------------------------- checkpoints


def allowed_globals() -> list[Any]:
    """The non-torch types nnU-Net checkpoints hold, and nothing else: numpy scalars and dtypes
    (its training log stores ``np.float64`` values). Each rebuilds plain data; none runs user code."""
    import importlib

    try:  # numpy 2 (numpy.core is its deprecated alias)
        scalar = importlib.import_module("numpy._core.multiarray").scalar
    except ImportError:  # numpy 1.x
        scalar = importlib.import_module("numpy.core.multiarray").scalar
    allowed: list[Any] = [(scalar, "numpy._core.multiarray.scalar"), (scalar, "numpy.core.multiarray.scalar"),
                          np.dtype]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles dtypes through these classes
    for name in dir(dtypes) if dtypes is not None else []:
        value = getattr(dtypes, name)
        if isinstance(value, type) and name.endswith("DType"):
            allowed.append(value)
    return allowed


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An nnU-Net checkpoint, unpickled with ``weights_only=True`` and :func:`allowed_globals` only.

    Raises :class:`InputError` (one line) for a missing or corrupt file, and for
    one holding any other type (named, with :data:`CONVERT_HINT`): the
    restricted unpickler refuses it before building anything.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file does not exist")
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:
            unsafe = []
        allowed = {"numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar", "numpy.dtype"}
        names = [n for n in unsafe if n not in allowed and not n.startswith("numpy.dtypes.")]
        what = ", ".join(names) if names else (text.splitlines()[0] if text else "a type that is not allowed")
        raise InputError(path, f"holds {what}, which topofix does not unpickle (checkpoints can run code when "
                               f"loaded); {CONVERT_HINT.replace('CHECKPOINT', str(path))}") from None
    except Exception as exc:
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise InputError(path, f"cannot read the checkpoint ({reason[:200]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("network_weights"), dict):
        raise InputError(path, "is not an nnU-Net checkpoint (no 'network_weights' dict)")
    return data


# ----------------------------------------------------------------------------------------- model


@dataclass
class NnUNetModel:
    """An nnU-Net model loaded for topofix: nnU-Net's managers, one network per fold.

    ``networks`` are built from the plans and loaded with each fold's weights, in
    eval mode on ``device``; ``predictor`` is nnU-Net's own nnUNetPredictor with
    the same weights, used by :func:`nnunet_predict`.
    """

    path: str
    folder: Path
    selection: NnUNetSelection
    configuration: str
    folds: list[str]
    trainer_name: str
    plans_manager: Any
    configuration_manager: Any
    label_manager: Any
    dataset_json: dict[str, Any]
    parameters: list[dict[str, Any]]
    networks: list[Any]
    mirror_axes: tuple[int, ...] | None
    device: Any
    warnings: list[str] = field(default_factory=list)
    _predictor: Any = None

    @property
    def kind(self) -> str:
        return "nnunet"

    @property
    def spatial_dims(self) -> int:
        return len(self.configuration_manager.patch_size)

    def predictor(self) -> Any:
        """nnU-Net's nnUNetPredictor on these weights (built once)."""
        if self._predictor is None:
            import torch
            from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

            on_gpu = torch.device(self.device).type == "cuda"
            with _quiet():
                predictor = nnUNetPredictor(tile_step_size=self.selection.tile_step_size, use_gaussian=True,
                                            use_mirroring=self.selection.tta, perform_everything_on_device=on_gpu,
                                            device=torch.device(self.device), verbose=False,
                                            verbose_preprocessing=False, allow_tqdm=False)
            network = _build_network(self)
            predictor.manual_initialization(network.to(self.device), self.plans_manager, self.configuration_manager,
                                            self.parameters, self.dataset_json, self.trainer_name, self.mirror_axes)
            self._predictor = predictor
        return self._predictor


def _build_network(model: NnUNetModel) -> Any:
    import inspect

    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    try:
        trainer_class = recursive_find_trainer_class_by_name(model.trainer_name)
    except Exception:
        trainer_class = None
    if trainer_class is None:
        raise InputError(model.folder, f"trainer {model.trainer_name!r} is not part of the installed nnunetv2 "
                                       "(a custom trainer must be importable: see nnU-Net's nnUNet_extTrainer)")
    n_in = determine_num_input_channels(model.plans_manager, model.configuration_manager, model.dataset_json)
    n_out = model.label_manager.num_segmentation_heads
    build = trainer_class.build_network_architecture
    if "plans_manager" in inspect.signature(build).parameters:
        return build(model.plans_manager, model.configuration_manager, n_in, n_out, enable_deep_supervision=False)
    cm = model.configuration_manager
    return build(cm.network_arch_class_name, cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import,
                 n_in, n_out, enable_deep_supervision=False)


def load_nnunet(path: str | os.PathLike[str], selection: NnUNetSelection | None = None, *,
                device: Any = "cpu") -> NnUNetModel:
    """Load an nnU-Net v2 model folder: plans, dataset.json, one network per fold (safely).

    Raises :class:`InputError` (one line naming the file): nnunetv2 not
    installed, missing or unreadable files, a checkpoint holding types outside
    the allow-list, a configuration or fold that is not there, a network with
    more than one input channel (one file per channel is not supported yet),
    weights that do not fit the plans.
    """
    import torch

    selection = selection or NnUNetSelection()
    root = Path(path)
    require_nnunetv2(root)
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = _model_folder(root, selection.configuration)
    plans = _read_json(folder / "plans.json")
    dataset_json = _read_json(folder / "dataset.json")
    folds = _folds(folder, selection)
    checkpoints = [load_checkpoint(folder / f"fold_{f}" / selection.checkpoint) for f in folds]
    first = checkpoints[0]
    trainer_name = str(first.get("trainer_name", "nnUNetTrainer"))
    init_args = first.get("init_args") or {}
    configuration = init_args.get("configuration") if isinstance(init_args, dict) else None
    if configuration is None:
        configuration = selection.configuration or folder.name.rsplit("__", 1)[-1]
    if selection.configuration is not None and configuration != selection.configuration:
        raise InputError(folder, f"was trained as configuration {configuration!r}, not {selection.configuration!r}")
    try:
        plans_manager = PlansManager(plans)
        configuration_manager = plans_manager.get_configuration(configuration)
        label_manager = plans_manager.get_label_manager(dataset_json)
    except Exception as exc:
        raise InputError(folder / "plans.json", f"unusable nnU-Net plans ({_first_line(exc)})") from None
    n_channels = len(dataset_json.get("channel_names", dataset_json.get("modality", {})) or {})
    if n_channels != 1:
        raise InputError(folder / "dataset.json", f"the model takes {n_channels} input channels (one file per "
                                                  "channel); topofix runs single-channel nnU-Net models only")
    if configuration_manager.previous_stage_name is not None:
        raise InputError(folder, f"configuration {configuration!r} is a cascade stage (needs the previous stage's "
                                 "segmentation); use nnUNetv2_predict for cascades")
    mirror = first.get("inference_allowed_mirroring_axes")
    model = NnUNetModel(
        path=os.fspath(path), folder=folder, selection=selection, configuration=configuration, folds=folds,
        trainer_name=trainer_name, plans_manager=plans_manager, configuration_manager=configuration_manager,
        label_manager=label_manager, dataset_json=dataset_json,
        parameters=[c["network_weights"] for c in checkpoints], networks=[],
        mirror_axes=None if mirror is None else tuple(int(a) for a in mirror), device=torch.device(device),
    )
    for fold, weights in zip(folds, model.parameters):
        network = _build_network(model)
        try:
            network.load_state_dict(weights)
        except Exception as exc:
            raise InputError(folder / f"fold_{fold}" / selection.checkpoint,
                             f"weights do not fit the network of the plans ({_first_line(exc)})") from None
        model.networks.append(network.to(model.device).eval())
    return model


def model_sha256(model_path: str | os.PathLike[str], selection: NnUNetSelection | None = None) -> str:
    """Content hash of what decides the results: plans.json, dataset.json and the checkpoints used."""
    selection = selection or NnUNetSelection()
    folder = _model_folder(Path(model_path), selection.configuration)
    digest = hashlib.sha256()
    files = [folder / "plans.json", folder / "dataset.json"]
    files += [folder / f"fold_{f}" / selection.checkpoint for f in _folds(folder, selection)]
    for file in files:
        digest.update(file.relative_to(folder).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _quiet():
    """nnU-Net prints progress and notes on stdout (where topofix writes its summary): discard them."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)[:200]


# ---------------------------------------------------------------------------------- preprocessing


def preprocess(model: NnUNetModel, image_path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """nnU-Net's preprocessing of one single-channel case: ``(data (C, *spatial) float32, properties)``."""
    preprocessor = model.configuration_manager.preprocessor_class(verbose=False)
    try:
        with _quiet():
            data, _, properties = preprocessor.run_case([os.fspath(image_path)], None, model.plans_manager,
                                                        model.configuration_manager, model.dataset_json)
    except Exception as exc:
        raise InputError(image_path, f"nnU-Net's preprocessing failed ({_first_line(exc)})") from None
    return np.ascontiguousarray(data, dtype=np.float32), properties


def _export(model: NnUNetModel, logits: Any, properties: dict[str, Any], probabilities: bool):
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

    with _quiet():
        return convert_predicted_logits_to_segmentation_with_correct_shape(
            logits, model.plans_manager, model.configuration_manager, model.label_manager, properties,
            return_probabilities=probabilities)


def _to_reader_layout(array: np.ndarray, image_ndim: int) -> np.ndarray:
    """nnU-Net handles a 2D image as 3D with one slice: drop that axis for a 2D input."""
    if image_ndim == 2 and array.ndim >= 3 and array.shape[-3] == 1:
        return array.reshape(array.shape[:-3] + array.shape[-2:])
    return array


@dataclass
class NnUNetPrediction:
    """nnU-Net's segmentation of one case in the input's geometry (``labels``), and its
    probabilities (``(K, *spatial)``) when asked for."""

    labels: np.ndarray
    probabilities: np.ndarray | None
    warnings: list[str] = field(default_factory=list)


def nnunet_predict(model: NnUNetModel, image_path: str | os.PathLike[str], *, image_ndim: int,
                   probabilities: bool = False) -> NnUNetPrediction:
    """What nnUNetv2_predict computes for this case: nnU-Net's preprocessing, its predictor (sliding
    window, Gaussian, mirroring, mean of the folds' logits) and its export, called here in-process."""
    import torch

    data, properties = preprocess(model, image_path)
    predictor = model.predictor()
    with _quiet():
        logits = predictor.predict_logits_from_preprocessed_data(
            torch.from_numpy(data).to(dtype=torch.float32, memory_format=torch.contiguous_format)).cpu().numpy()
    if not np.isfinite(logits).all():
        raise InputError(image_path, "the nnU-Net network's output contains NaN or Inf (no mask written)")
    exported = _export(model, logits, properties, probabilities)
    labels, probs = (exported if probabilities else (exported, None))
    return NnUNetPrediction(_to_reader_layout(np.asarray(labels), image_ndim),
                            None if probs is None else _to_reader_layout(np.asarray(probs), image_ndim))


# --------------------------------------------------------------------------------------- correct


def _ensemble_module(model: NnUNetModel, mirror: bool):
    """The networks as one module: the mean of the folds' logits, each averaged over nnU-Net's
    mirrorings (as nnUNetPredictor computes them) when ``mirror``."""
    import torch

    class _Ensemble(torch.nn.Module):
        def __init__(self, members: Sequence[torch.nn.Module], axes: tuple[int, ...] | None) -> None:
            super().__init__()
            self.members = torch.nn.ModuleList(members)
            self.axes = axes

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            total = None
            for member in self.members:
                out = member(x)
                if self.axes:
                    dims = [a + 2 for a in self.axes if a + 2 < x.ndim]
                    combos = [c for i in range(len(dims)) for c in itertools.combinations(dims, i + 1)]
                    for combo in combos:
                        out = out + torch.flip(member(torch.flip(x, combo)), combo)
                    out = out / (len(combos) + 1)
                total = out if total is None else total + out
            assert total is not None
            return total / len(self.members)

    return _Ensemble(model.networks, model.mirror_axes if mirror else None)


def _pad_to(array: np.ndarray, minimum: Sequence[int]) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Zero-pad the trailing axes up to ``minimum`` (centred, as nnU-Net's pad_nd_image); the crop back."""
    lead = array.ndim - len(minimum)
    pads = [(0, 0)] * lead
    crop: list[slice] = [slice(None)] * lead
    for size, want in zip(array.shape[lead:], minimum):
        extra = max(0, int(want) - size)
        below = extra // 2
        pads.append((below, extra - below))
        crop.append(slice(below, below + size))
    return np.pad(array, pads), tuple(crop)


def _export_logits(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Logits whose softmax is ``probabilities`` and whose argmax is ``labels``: ``log p``, except where
    topofix chose another label than the argmax (repair stage): there one-hot-like (0 / log 1e-4).
    nnU-Net resamples logits linearly, so ``log p`` gives back exactly ``p``'s argmax (the per-voxel
    log-normaliser is the same for every channel and survives any linear interpolation)."""
    logits = np.log(np.clip(probabilities, 1e-8, None)).astype(np.float32)
    differs = np.argmax(probabilities, axis=0) != labels
    if differs.any():
        forced = np.full((probabilities.shape[0], int(differs.sum())), np.log(1e-4), dtype=np.float32)
        forced[labels[differs].astype(np.intp), np.arange(forced.shape[1])] = 0.0
        logits[:, differs] = forced
    return logits


def nnunet_correct(model: NnUNetModel, image_path: str | os.PathLike[str], priors: Sequence[Any], *,
                   image_ndim: int, settings: Any = None, per_slice: str | None = None, device: Any = "cpu",
                   callback: Callable[[int, float, float], None] | None = None):
    """:func:`topofix.correct` on an nnU-Net model: fine-tuning in nnU-Net's preprocessed space,
    exported to the input's geometry by nnU-Net's export. Returns a
    :class:`topofix.correction.CorrectionResult` in the input's geometry, the priors judged again
    there (the report's Betti numbers are those of the written masks); where the export's resampling
    broke a prior the corrected mask met, topofix's map repair runs on the exported probabilities.
    """
    import torch

    from topofix.assessment import assess
    from topofix.checking import SLICE_AXES
    from topofix.correction import CorrectionSettings, correct
    from topofix.map_repair import map_settings
    from topofix.map_repair import repair as map_repair
    from topofix.models.contract import ModelContract
    from topofix.priors import target_priors

    settings = settings or CorrectionSettings()
    prior_list = target_priors(priors, "correct")
    if model.label_manager.has_regions:
        raise InputError(model.folder, "region-based nnU-Net models (sigmoid outputs per region) are not "
                                       "supported by correct yet; use predict, then topofix repair")
    dims = model.spatial_dims
    data, properties = preprocess(model, image_path)
    volume = data[0]  # (z, y, x) in nnU-Net's transposed, resampled, cropped space
    transpose = list(model.plans_manager.transpose_forward)
    inner_slice: str | None = None
    if image_ndim == 2:
        per_slice = None  # as predict and correct do for a 2D image in a batch of stacks
        volume = volume[0]
    elif dims == 2:
        # nnU-Net runs a 2D configuration on the slices along its axis 0 (original axis transpose[0])
        axis_name = {v: k for k, v in SLICE_AXES.items()}[transpose[0]]
        if per_slice is not None and SLICE_AXES[per_slice] != transpose[0]:
            raise InputError(image_path, f"--per-slice {per_slice}: this 2D nnU-Net model runs on the slices "
                                         f"along {axis_name}; use --per-slice {axis_name}")
        per_slice, inner_slice = axis_name, "z"
    elif per_slice is not None:
        raise InputError(image_path, f"--per-slice with the 3D nnU-Net configuration {model.configuration!r}: "
                                     "per-slice priors need a 2D network")

    patch = tuple(int(p) for p in model.configuration_manager.patch_size)
    padded, crop = _pad_to(volume, patch)
    contract = ModelContract(normalize="none", activation="softmax", spatial_dims=dims, pad_multiple=1)
    module = _ensemble_module(model, model.selection.tta)
    result = correct(padded, module, prior_list, settings=settings, contract=contract, per_slice=inner_slice,
                     patch_size=patch, overlap=1.0 - model.selection.tile_step_size, device=str(device),
                     path=os.fspath(image_path), callback=callback)

    def export(prob: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        prob, labels = prob[(slice(None),) + crop], labels[crop]
        if image_ndim == 2:
            prob, labels = prob[:, None], labels[None]
        seg, probs = _export(model, torch.from_numpy(_export_logits(prob, labels)), properties, True)
        return (_to_reader_layout(np.asarray(seg), image_ndim),
                _to_reader_layout(np.asarray(probs), image_ndim).astype(np.float32))

    labels0, prob0 = export(result.original_probabilities, result.original_labels)
    labels1, prob1 = export(result.probabilities, result.labels)
    units0 = assess(labels0, prior_list, connectivity=settings.connectivity, per_slice=per_slice)
    units1 = assess(labels1, prior_list, connectivity=settings.connectivity, per_slice=per_slice)
    report = result.report
    if report.met_after and not all(u.met for u in units1.values()):
        # resampling to the input's spacing broke what the corrected mask met: repair it there
        # (the map's own settings: correct's learning rate is for network weights, not logits)
        repair_settings = map_settings(connectivity=settings.connectivity, threshold=settings.threshold,
                                       evidence_floor=settings.evidence_floor, seed=settings.seed)
        fixed = map_repair(prob1, prior_list, labels=labels1, settings=repair_settings, per_slice=per_slice,
                           path=os.fspath(image_path))
        changed = int(np.count_nonzero(fixed.labels != labels1))
        labels1, prob1 = fixed.labels, fixed.probabilities.astype(np.float32)
        units1 = assess(labels1, prior_list, connectivity=settings.connectivity, per_slice=per_slice)
        report.repaired = report.repaired or changed > 0
        report.repair_changed += changed
        report.repair_actions += fixed.report.repair_actions
        report.warnings.append("resampling to the input's spacing broke the corrected mask's topology; "
                               f"repaired on the exported probabilities in the input's geometry ({changed} voxels)")
    _rejudge(report, prior_list, units0, units1, labels0, labels1)
    result.labels, result.probabilities = labels1, prob1
    result.original_labels, result.original_probabilities = labels0, prob0
    return result


def _rejudge(report: Any, priors: Sequence[Any], units0: dict[Any, Any], units1: dict[Any, Any],
             labels0: np.ndarray, labels1: np.ndarray) -> None:
    """The report's per-prior outcome, measured on the masks as written (input geometry)."""
    from topofix.metrics.overlap import mean_label_dice as dice

    for outcome, prior in zip(report.priors, priors):
        keys = [u for u in units0 if u[0] == prior.name]
        before, after = [units0[u] for u in keys], [units1[u] for u in keys]
        outcome.betti_before = [list(s.betti) for s in before]
        outcome.betti_after = [list(s.betti) for s in after]
        outcome.met_before = all(s.met for s in before)
        outcome.met_after = all(s.met for s in after)
        outcome.failing_slices_before = [s.slice_index for s in before if not s.met and s.slice_index is not None]
        outcome.failing_slices_after = [s.slice_index for s in after if not s.met and s.slice_index is not None]
    report.met_before = all(o.met_before for o in report.priors)
    report.met_after = all(o.met_after for o in report.priors)
    report.changed_fraction = float(np.mean(labels0 != labels1))
    report.dice_original_corrected = dice(labels0, labels1)
