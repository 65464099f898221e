"""``topofix predict``: the user's network on every input, masks written with the input's geometry.

What ``topofix correct`` starts from, on its own: to look at the network's
segmentations (and their topology, with ``topofix check``) before correcting them.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from topofix.cli import options
from topofix.cli.console import err, out, print_error, print_warning
from topofix.errors import TopofixError

EXAMPLES = """
[bold]Examples[/]

  A 2D network on 2D images (PNG, NIfTI...); masks go to seg/ with the same names:
    [cyan]topofix predict images/ -m unet2d.pt -o seg/[/]

  A 2D network on 3D short-axis stacks, slice by slice, with probability maps:
    [cyan]topofix predict stacks/*.nii.gz -m unet2d.pt -o seg/ --per-slice z --save-probabilities[/]

  A 3D network (ONNX) on CT volumes, 96^3 sliding windows, on the GPU:
    [cyan]topofix predict ct/ -m unet3d.onnx -o seg/ --normalize percentile --patch-size 96,96,96 --device cuda[/]

  Then check the topology of what the network produced:
    [cyan]topofix check seg/ --per-slice z -p 2=1,1[/]

[bold]Outputs[/]: seg/<input name> (label map: argmax of the softmax, or sigmoid >= --threshold; same format
and geometry as the input); with --save-probabilities also <stem>_prob<L>.<ext>, the float32 probability of
label L (PNG inputs: .nii.gz). Existing files are kept unless --overwrite.

[bold]Exit status[/]: 0 every input segmented, 2 some input failed (unreadable, output exists, the network
failed on it) or a usage error (the other inputs are still segmented).
"""


def _probability_ext(ext: str) -> str:
    return ".nii.gz" if ext == ".png" else ext


def planned_outputs(path: str, folder: Path, n_labels: int | None = None) -> tuple[Path, list[Path]]:
    """``(mask path, probability paths)`` for an input; probabilities need the label count
    (``None``: the pattern is unknown yet, no probability paths)."""
    from topofix.io import image_extension

    name = os.path.basename(path)
    mask = folder / name
    if n_labels is None:
        return mask, []
    ext = image_extension(name) or ""
    stem = name[: len(name) - len(ext)] if ext else name
    return mask, [folder / f"{stem}_prob{label}{_probability_ext(ext)}" for label in range(n_labels)]


def probability_labels(n_channels: int, activation: str) -> list[int]:
    """Label of each probability channel: channel k is label k (softmax) or k+1 (sigmoid)."""
    offset = 1 if activation in ("sigmoid",) or (activation == "none" and n_channels == 1) else 0
    return [k + offset for k in range(n_channels)]


def _same_file(a: Path, b: str) -> bool:
    try:
        return a.resolve() == Path(b).resolve()
    except OSError:
        return False


def predict_command(
    inputs: Annotated[
        list[str],
        typer.Argument(help="Images to segment (NIfTI, MHA/MHD, NRRD, PNG), folders or glob patterns.", show_default=False),
    ],
    model: options.Model,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", metavar="DIR", help="Folder for the masks (created if missing); same file names as the inputs.", show_default=False),
    ],
    normalize: options.Normalize = options.NormalizeChoice.zscore,
    activation: options.Activation = options.ActivationChoice.auto,
    pad_multiple: options.PadMultiple = None,
    per_slice: options.ModelPerSlice = None,
    patch_size: options.PatchSize = None,
    overlap: options.Overlap = 0.5,
    device: options.Device = options.DeviceChoice.auto,
    threshold: Annotated[
        Optional[float],
        typer.Option("--threshold", metavar="P", help=options.THRESHOLD_HELP, show_default=False, rich_help_panel=options.MODEL_PANEL),
    ] = None,
    save_probabilities: Annotated[
        bool,
        typer.Option("--save-probabilities", help="Also write one float32 probability map per label, <stem>_prob<L>.<ext>."),
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no model summary; errors and the summary line only.")] = False,
) -> None:
    """Segment images with your trained network (TorchScript or ONNX), writing label maps with the inputs' geometry.

    The network's own segmentation, before any topological correction.
    """
    # Usage checks first: nothing is loaded (torch included) for a typo.
    try:
        patch = options.parse_patch_size(patch_size)
        multiple = options.parse_pad_multiple(pad_multiple)
        options.parse_threshold(threshold)
    except ValueError as error:
        print_error(str(error))
        raise typer.Exit(2) from None
    if not 0.0 <= overlap < 1.0:
        print_error(f"--overlap {overlap}: must be in [0, 1)")
        raise typer.Exit(2)
    if output.exists() and not output.is_dir():
        print_error(f"{output}: is a file, expected an output folder")
        raise typer.Exit(2)

    from topofix.inputs import expand_inputs

    items = expand_inputs(inputs)
    for item in items:
        if item.error is None and _same_file(planned_outputs(item.path, output)[0], item.path):
            print_error(
                f"{output}: the output folder holds the input {os.path.basename(item.path)}, which its mask "
                "would overwrite; choose another --output folder"
            )
            raise typer.Exit(2)

    from topofix.models.contract import ModelContract
    from topofix.models.inference import resolve_device

    try:
        dev = resolve_device(device.value)
        from topofix.models.loading import load_model

        with warnings.catch_warnings():  # its warnings are printed below, one line each
            warnings.simplefilter("ignore")
            loaded = load_model(model, device=str(dev))
    except TopofixError as error:
        print_error(str(error))
        raise typer.Exit(2) from None
    for warning in getattr(loaded, "warnings", None) or []:
        print_warning(f"{model}: {warning}")

    contract = ModelContract(
        normalize=normalize.value, activation=activation.value, pad_multiple=multiple,
    )
    written, failed = _run_batch(
        items, loaded.module, contract, output, dev,
        per_slice=None if per_slice is None else per_slice.value, patch=patch, overlap=overlap,
        threshold=threshold, save_probabilities=save_probabilities, overwrite=overwrite, quiet=quiet,
        model_name=str(model),
    )
    summary = f"{written} mask(s) written to {output}"
    if failed:
        summary += f"; {failed} input(s) failed"
    out.print(summary + ".", soft_wrap=True, markup=False)
    raise typer.Exit(2 if failed else 0)


def _run_batch(items, module, contract, output: Path, dev, *, per_slice, patch, overlap, threshold,
               save_probabilities, overwrite, quiet, model_name) -> tuple[int, int]:
    from tqdm.auto import tqdm

    from topofix.errors import OutputError
    from topofix.io import read_image, write_image, write_mask
    from topofix.prediction import predict

    bar = tqdm(items, desc="predict", unit="image", disable=True if quiet else None, leave=False, file=sys.stderr)

    def report(message: str, level: str = "error") -> None:
        with tqdm.external_write_mode(file=sys.stderr):
            if level == "error":
                print_error(message)
            elif level == "warning":
                print_warning(message)
            else:
                err.print(f"[yellow]{level}:[/] {message}", highlight=False)

    warn_threshold = threshold is not None
    threshold = options.parse_threshold(threshold)
    written = failed = 0
    claimed: dict[Path, str] = {}  # output path -> the input it belongs to
    described = False
    for item in bar:
        if item.error is not None:
            report(str(item.error))
            failed += 1
            continue
        path = item.path
        mask_path = planned_outputs(path, output)[0]
        try:
            key = mask_path.resolve()
            if key in claimed:
                raise OutputError(mask_path, f"is also the output of {claimed[key]} (inputs with the same name)")
            claimed[key] = path
            if mask_path.exists() and not overwrite:
                raise OutputError(mask_path, "already exists (use --overwrite to replace it)")
            image = read_image(path)
            pred = predict(
                image, module, contract=contract, per_slice=per_slice, patch_size=patch, overlap=overlap,
                device=dev, threshold=threshold,
            )
            if warn_threshold:  # given: say once if it cannot apply
                warn_threshold = False
                unused = options.threshold_warning(pred.contract.activation, pred.probabilities.shape[0])
                if unused:
                    report(unused, level="warning")
            if not described and not quiet:
                described = True
                how = f"per slice along {per_slice}" if per_slice else "whole images"
                if patch:
                    how = ("per slice, " if per_slice else "") + f"windows {','.join(map(str, patch))} overlap {overlap:g}"
                report(f"model {model_name}: {pred.contract.describe()}; {how}; device {dev}", level="info")
            for warning in pred.warnings:
                report(f"{path}: {warning}", level="warning")
            prob_paths: list[Path] = []
            if save_probabilities:
                labels = probability_labels(pred.probabilities.shape[0], pred.contract.activation)
                _, prob_paths = planned_outputs(path, output, max(labels) + 1)
                prob_paths = [prob_paths[label] for label in labels]
                for p in prob_paths:
                    if p.exists() and not overwrite:
                        raise OutputError(p, "already exists (use --overwrite to replace it)")
            write_mask(mask_path, pred.labels, reference=image, overwrite=overwrite)
            for p, channel in zip(prob_paths, pred.probabilities):
                write_image(p, channel, reference=image, overwrite=overwrite)
            written += 1
        except TopofixError as error:
            message = str(error)
            if not (message.startswith(path) or isinstance(error, OutputError)):
                message = f"{path}: {message}"
            report(message)
            failed += 1
    return written, failed


predict_command.__doc__ = (predict_command.__doc__ or "") + EXAMPLES
