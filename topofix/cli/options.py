"""Typer option definitions shared by every command, so that ``--betti`` or
``--connectivity`` mean and read the same in ``check``, ``correct`` and ``evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from topofix import choices

# The option vocabularies live in topofix.choices (one str Enum per option, used by the library too);
# the names here are the ones the commands use.
ConnectivityChoice = choices.Connectivity
SliceAxis = choices.SliceAxis
EmptyChoice = choices.EmptyPolicy
NormalizeChoice = choices.Normalize
ActivationChoice = choices.Activation
DeviceChoice = choices.Device


PRIORS_PANEL = "Topological prior"

FOLDER_NOTE = (
    "In a folder, topofix's own extra outputs next to their mask (<stem>_original, <stem>_prob<L>) are "
    "skipped; give them as files or a glob to include them. Broken links are reported."
)

Betti = Annotated[
    Optional[str],
    typer.Option(
        "--betti",
        "-b",
        metavar="B0,B1[,B2][|...]",
        help="Betti numbers the structure must have: components, loops (holes), cavities; two or three "
        "numbers (a lone 0 means absent). "
        "1,1 = one ring (myocardium); 1,0 = one solid blob; 1,0,0 = one solid 3D object. "
        "Alternatives with '|' (quoted in the shell), met when any holds: '1,1|0,0' = a ring, or absent. "
        "Applies to --label, or to any non-zero voxel.",
        rich_help_panel=PRIORS_PANEL,
    ),
]
Label = Annotated[
    Optional[str],
    typer.Option(
        "--label",
        "-l",
        metavar="L[+L...]",
        help="Label (or union of labels, 2+3) that --betti applies to. Default: any non-zero voxel.",
        rich_help_panel=PRIORS_PANEL,
    ),
]
PriorSpecs = Annotated[
    Optional[list[str]],
    typer.Option(
        "--prior",
        "-p",
        metavar="LABELS=B0,B1[,B2][|...]",
        help="Per-label prior, repeatable; unions with '+'; two or three Betti numbers as in --betti. "
        "ACDC example (1 RV, 2 MYO, 3 LV): "
        "--prior 2=1,1 --prior 1=1,0 --prior 3=1,0 --prior 2+3=1,0 --prior 1+3=2,0. "
        "Alternatives with '|' (quoted in the shell), met when any holds: "
        "'2=1,1|0,0': a ring, or absent (e.g. slices above the base or below the apex).",
        rich_help_panel=PRIORS_PANEL,
    ),
]
Connectivity = Annotated[
    ConnectivityChoice,
    typer.Option(
        "--connectivity",
        "-c",
        case_sensitive=False,
        help="full: foreground 8-connected (2D) / 26 (3D), background 4 / 6 (default, as "
        "nnU-Net/MONAI keep-largest-component). face: foreground 4 / 6, background 8 / 26.",
        rich_help_panel=PRIORS_PANEL,
    ),
]
PerSlice = Annotated[
    Optional[SliceAxis],
    typer.Option(
        "--per-slice",
        metavar="AXIS",
        case_sensitive=False,
        help="Treat 3D stacks as 2D slices along AXIS (x, y or z; z for cardiac short-axis "
        "stacks) and check every slice on its own.",
    ),
]


# --------------------------------------------------------------------------- #
# The user's network: shared by `predict` and `correct`
# --------------------------------------------------------------------------- #


MODEL_PANEL = "Model"

Model = Annotated[
    Path,
    typer.Option(
        "--model",
        "-m",
        metavar="FILE|FOLDER",
        help="The trained segmentation network: a TorchScript file (torch.jit.save; scripted or traced), "
        "an ONNX file, or an nnU-Net v2 trained-model folder (plans.json, dataset.json, fold_X/; needs "
        "topofix[nnunet]).",
        show_default=False,
        rich_help_panel=MODEL_PANEL,
    ),
]
Normalize = Annotated[
    NormalizeChoice,
    typer.Option(
        "--normalize",
        case_sensitive=False,
        help="Intensity normalisation the network was trained with, over the whole image: zscore "
        "(mean 0, std 1; nnU-Net for MR), percentile (clip to the 0.5-99.5 percentiles, then zscore; "
        "nnU-Net-like for CT), minmax (to [0, 1]), none (raw values).",
        rich_help_panel=MODEL_PANEL,
    ),
]
Activation = Annotated[
    ActivationChoice,
    typer.Option(
        "--activation",
        case_sensitive=False,
        help="Turns the network's outputs into probabilities. auto: sigmoid for 1 output channel, "
        "softmax for more. none: the network already outputs probabilities.",
        rich_help_panel=MODEL_PANEL,
    ),
]
PadMultiple = Annotated[
    Optional[str],
    typer.Option(
        "--pad-multiple",
        metavar="N|Z,Y,X",
        help="Pad image sides to a multiple of N before the network (cropped back after): one number for "
        "every axis, or one per axis of the network in array order (Z,Y,X for a 3D network, Y,X for a 2D "
        "one, per slice too); e.g. 1,16,16 for a 3D network that does not downsample z. "
        "Default: detected on the model, per axis (2^poolings along each axis, up to 32).",
        show_default=False,
        rich_help_panel=MODEL_PANEL,
    ),
]
ModelPerSlice = Annotated[
    Optional[SliceAxis],
    typer.Option(
        "--per-slice",
        metavar="AXIS",
        case_sensitive=False,
        help="Run a 2D network on every slice of 3D stacks along AXIS (x, y or z; z for cardiac "
        "short-axis stacks). A 2D network on a 3D image needs it.",
        rich_help_panel=MODEL_PANEL,
    ),
]
PatchSize = Annotated[
    Optional[str],
    typer.Option(
        "--patch-size",
        metavar="Z,Y,X",
        help="Sliding-window inference with windows of this size, in array order (2D: Y,X; one number "
        "for every axis). Gaussian-weighted, like nnU-Net. Default: the whole image at once.",
        show_default=False,
        rich_help_panel=MODEL_PANEL,
    ),
]
Overlap = Annotated[
    float,
    typer.Option(
        "--overlap",
        metavar="F",
        help="With --patch-size: fraction of a window shared with its neighbours, in [0, 1).",
        rich_help_panel=MODEL_PANEL,
    ),
]
Device = Annotated[
    DeviceChoice,
    typer.Option(
        "--device",
        case_sensitive=False,
        help="auto: a CUDA GPU when there is one, else the CPU.",
        rich_help_panel=MODEL_PANEL,
    ),
]


NNUNET_PANEL = "nnU-Net model (-m FOLDER)"
Folds = Annotated[
    Optional[str],
    typer.Option(
        "--folds",
        metavar="F[,F...]",
        help="nnU-Net folds to use (numbers or all), averaged as nnUNetv2_predict does. Default: every "
        "fold_X folder with the checkpoint.",
        show_default=False,
        rich_help_panel=NNUNET_PANEL,
    ),
]
Configuration = Annotated[
    Optional[str],
    typer.Option(
        "--configuration",
        metavar="NAME",
        help="nnU-Net configuration (2d, 3d_fullres...): picks the trainer__plans__NAME folder when -m is "
        "a dataset's results folder.",
        show_default=False,
        rich_help_panel=NNUNET_PANEL,
    ),
]
Checkpoint = Annotated[
    Optional[str],
    typer.Option(
        "--checkpoint",
        metavar="FILE",
        help="Checkpoint file name in each fold folder (default: checkpoint_final.pth; nnU-Net also writes checkpoint_best.pth).",
        show_default=False,
        rich_help_panel=NNUNET_PANEL,
    ),
]
DisableTta = Annotated[
    bool,
    typer.Option("--disable-tta", help="nnU-Net models: no mirroring test-time augmentation (faster; "
                 "nnUNetv2_predict --disable_tta).", rich_help_panel=NNUNET_PANEL),
]


def nnunet_selection(folds: str | None, configuration: str | None, checkpoint: str | None,
                     disable_tta: bool) -> Any:
    """The nnU-Net options as a :class:`topofix.models.nnunet.NnUNetSelection`; ``None`` when none is given."""
    if folds is None and configuration is None and checkpoint is None and not disable_tta:
        return None
    from topofix.errors import TopofixError
    from topofix.models.nnunet import CHECKPOINT, NnUNetSelection

    fold_list = None
    if folds is not None:
        fold_list = tuple(f for f in folds.replace(",", " ").split() if f)
        bad = [f for f in fold_list if not (f.isdigit() or f == "all")]
        if not fold_list or bad:
            raise TopofixError(f"--folds {folds}: expected fold numbers or 'all', separated by commas")
    if checkpoint is not None and (not checkpoint or "/" in checkpoint or checkpoint in (".", "..")):
        raise TopofixError(f"--checkpoint {checkpoint}: a file name inside each fold folder")
    return NnUNetSelection(folds=fold_list, configuration=configuration, checkpoint=checkpoint or CHECKPOINT,
                           tta=not disable_tta)


def parse_patch_size(text: str | None) -> tuple[int, ...] | None:
    """``"96,96,96"`` -> ``(96, 96, 96)``; ``"64"`` -> ``(64,)`` (every axis). ValueError with a one-line reason."""
    if text is None:
        return None
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    try:
        sides = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--patch-size {text!r}: expected positive integers separated by commas, e.g. 96,96,96") from None
    if not 1 <= len(sides) <= 3 or any(s < 1 for s in sides):
        raise ValueError(f"--patch-size {text!r}: expected 1 to 3 positive integers, e.g. 96,96,96")
    return sides


def parse_pad_multiple(text: str | None) -> int | tuple[int, ...] | None:
    """``"8"`` -> ``8`` (every axis); ``"1,16,16"`` -> ``(1, 16, 16)`` (one per axis, array order).

    ValueError with a one-line reason for anything else (zero, negative, not a number, 4 numbers).
    """
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"--pad-multiple {text!r}: expected a positive integer, or 2 or 3 separated by commas (Y,X or Z,Y,X)"
        ) from None
    if len(values) > 3 or any(v < 1 for v in values):
        raise ValueError(
            f"--pad-multiple {text!r}: expected a positive integer, or 2 or 3 separated by commas (Y,X or Z,Y,X)"
        )
    return values[0] if len(values) == 1 else values


THRESHOLD_HELP = "Sigmoid outputs: foreground where the probability is >= P, with 0 < P < 1 (default 0.5). " \
    "No effect on softmax outputs (argmax), which a warning says."


def parse_threshold(value: float | None) -> float:
    """``--threshold``: 0.5 when not given; ValueError (one line) outside (0, 1) or NaN."""
    if value is None:
        return 0.5
    if not 0.0 < value < 1.0:  # False for NaN too
        raise ValueError(f"--threshold {value}: must be strictly between 0 and 1")
    return value


def threshold_warning(activation: str, n_channels: int) -> str | None:
    """The line to print once when --threshold was given for an output it does not apply to."""
    from topofix.models.inference import threshold_applies

    if threshold_applies(activation, n_channels):
        return None
    return (f"--threshold has no effect: the model's {n_channels} output channels are read with an argmax "
            "(softmax); it applies to sigmoid outputs only")


# --------------------------------------------------------------------------- #
# Scale: threads, workers, shards (predict, correct, repair)
# --------------------------------------------------------------------------- #
SCALE_PANEL = "Scale"

Threads = Annotated[
    Optional[int],
    typer.Option(
        "--threads",
        min=1,
        metavar="N",
        help="CPU threads for the network and the persistence kernels together (default: the cores this "
        "process may use divided by --workers, at most 4; more threads than free cores slow torch down a lot).",
        show_default=False,
        rich_help_panel=SCALE_PANEL,
    ),
]
Workers = Annotated[
    int,
    typer.Option(
        "--workers",
        min=1,
        metavar="N",
        help="Process N scans at once, each in its own process with its own copy of the network and "
        "--threads threads (default: a share of the cores); outputs identical to a sequential run's.",
        rich_help_panel=SCALE_PANEL,
    ),
]
Shard = Annotated[
    Optional[str],
    typer.Option(
        "--shard",
        metavar="K/N",
        help="Process only part K of N (0 <= K < N) of the sorted inputs: inputs K, K+N, K+2N... "
        "(nnU-Net's -part_id/-num_parts). 'auto' reads SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT or "
        "JOB_COMPLETION_INDEX/TOPOFIX_SHARDS (Kubernetes Indexed Jobs). Each shard keeps its own journal; "
        "'topofix report DIR' merges them.",
        show_default=False,
        rich_help_panel=SCALE_PANEL,
    ),
]
Cluster = Annotated[
    Optional[str],
    typer.Option(
        "--cluster",
        metavar="ADDRESS",
        help="Run the scans as tasks on a Dask cluster: a scheduler address (tcp://scheduler:8786; workers "
        "started by dask-jobqueue on SLURM/PBS, dask-kubernetes, or 'dask worker') or local:N (N worker "
        "processes on this machine). The workers must see the inputs, the model and the output folder at the "
        "same paths (a shared file system); this process keeps the journal and the reports. Needs "
        "pip install 'topofix[distributed]'. Not with --workers or --shard.",
        show_default=False,
        rich_help_panel=SCALE_PANEL,
    ),
]


def check_cluster(cluster: str | None, workers: int, shard: str | None) -> None:
    """Usage errors of --cluster (one line), before anything is loaded."""
    if cluster is None:
        return
    from topofix.errors import TopofixError

    if workers > 1:
        raise TopofixError("--workers and --cluster: choose one (--cluster local:N runs N worker processes)")
    if shard is not None:
        raise TopofixError("--shard and --cluster: choose one (a cluster takes the whole batch)")
    from topofix.cluster import check_cluster_address

    check_cluster_address(cluster)


# --------------------------------------------------------------------------- #
# Mask format (predict, correct, repair): topofix.mask_format
# --------------------------------------------------------------------------- #
OutputFormatChoice = choices.OutputFormat
LossChoice = choices.LossName


OutputFormat = Annotated[
    OutputFormatChoice,
    typer.Option(
        "--output-format",
        case_sensitive=False,
        help="auto: each mask in its input's format (a DICOM series' as NIfTI, <series folder>.nii.gz); "
        "nifti: every mask as .nii.gz; dicom-seg: a DICOM-SEG per DICOM series (<series folder>.dcm), "
        "referencing the series, in its frame of reference (inputs must be DICOM series; needs "
        "pip install 'topofix[dicom]'). Probability maps are always NIfTI.",
        rich_help_panel="Outputs",
    ),
]
Labels = Annotated[
    Optional[Path],
    typer.Option(
        "--labels",
        metavar="FILE",
        help="Names of the labels, for the segments of a DICOM-SEG: a JSON object {\"1\": \"liver\", ...} or "
        "nnU-Net's dataset.json ({\"labels\": {\"background\": 0, \"liver\": 1}}). Unnamed labels are 'label N'.",
        show_default=False,
        rich_help_panel="Outputs",
    ),
]


def parse_mask_format(output_format: OutputFormatChoice, labels: Path | None):
    """The run's :class:`topofix.mask_format.MaskFormat`; one-line usage errors (a bad label table,
    highdicom missing) before anything is loaded."""
    from topofix.mask_format import mask_format

    return mask_format(output_format.value, labels)
