"""``topofix predict``: the user's network on every input, masks written with the input's geometry.

What ``topofix correct`` starts from, on its own: to look at the network's
segmentations (and their topology, with ``topofix check``) before correcting them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from topofix.batch import parse_shard
from topofix.cli import options
from topofix.cli.console import err, out, print_error, print_warning
from topofix.cli.progress import BatchProgress, print_interrupted, print_threshold_warning
from topofix.errors import TopofixError
from topofix.threads import set_threads

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

Inputs that share a file name keep their path relative to the inputs' common folder. Every file is
written to a hidden temporary name, read back, then renamed into place; each input is recorded in
seg/topofix_journal.jsonl as it finishes (resume with --skip-existing).

[bold]Exit status[/]: 0 every input segmented, 2 some input failed (unreadable, output exists, the network
failed on it or output NaN/Inf, a write that did not read back) or a usage error (the other inputs are
still segmented), 130 / 143 interrupted by SIGINT / SIGTERM.
"""


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
    folds: options.Folds = None,
    configuration: options.Configuration = None,
    checkpoint: options.Checkpoint = None,
    disable_tta: options.DisableTta = False,
    threshold: Annotated[
        Optional[float],
        typer.Option("--threshold", metavar="P", help=options.THRESHOLD_HELP, show_default=False, rich_help_panel=options.MODEL_PANEL),
    ] = None,
    save_probabilities: Annotated[
        bool,
        typer.Option("--save-probabilities", help="Also write one float32 probability map per label, <stem>_prob<L>.<ext>."),
    ] = False,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Resume: carry forward the inputs the journal records as done with the same model and settings (their outputs are read back first); redo the rest.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
    threads: options.Threads = None,
    workers: options.Workers = 1,
    shard: options.Shard = None,
    cluster: options.Cluster = None,
    output_format: options.OutputFormat = options.OutputFormatChoice.auto,
    labels: options.Labels = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no model summary; errors and the summary line only.")] = False,
) -> None:
    """Segment images with your trained network (TorchScript or ONNX), writing label maps with the inputs' geometry.

    The network's own segmentation, before any topological correction.
    """
    # Usage checks first: nothing is loaded (torch included) for a typo.
    try:
        shard_part = None if shard is None else parse_shard(shard)
        options.check_cluster(cluster, workers, shard)
        patch = options.parse_patch_size(patch_size)
        multiple = options.parse_pad_multiple(pad_multiple)
        threshold_value = options.parse_threshold(threshold)
        masks = options.parse_mask_format(output_format, labels)
        nnunet = options.nnunet_selection(folds, configuration, checkpoint, disable_tta)
        if not 0.0 <= overlap < 1.0:
            raise TopofixError(f"--overlap {overlap}: must be in [0, 1)")
    except (TopofixError, ValueError) as error:
        print_error(str(error))
        raise typer.Exit(2) from None

    from topofix.files import Inference, predict_files
    from topofix.models.contract import ModelContract

    inference = Inference(
        contract=ModelContract(normalize=normalize.value, activation=activation.value, pad_multiple=multiple),
        per_slice=None if per_slice is None else per_slice.value, patch_size=patch, overlap=overlap,
        device=device.value, threshold=threshold_value, nnunet=nnunet,
    )
    set_threads(threads, workers=workers)
    progress = BatchProgress("predict", quiet)
    try:
        report = predict_files(inputs, model, output, inference=inference, save_probabilities=save_probabilities,
                               resume=skip_existing, overwrite=overwrite, on_start=progress.start,
                               on_case=progress.case, shard=shard_part, workers=workers, threads=threads,
            cluster=cluster, output_format=masks.format, labels=masks.label_table or None)
    except (TopofixError, ValueError) as error:
        progress.close()
        print_error(str(error))
        raise typer.Exit(2) from None
    progress.close()
    for warning in report.warnings:
        print_warning(f"{model}: {warning}")
    print_threshold_warning(report, given=threshold is not None)
    described = False
    for case in report.cases:
        for warning in case.result.get("warnings") or []:
            print_warning(f"{case.path}: {warning}")
        how = case.result.get("contract")
        if how and not quiet and not described:
            described = True
            err.print(f"model {escape(str(model))}: {escape(how)}; device {inference.device}", highlight=False)
    written = sum(1 for c in report.cases if c.ok)
    summary = f"{written} mask(s) written to {output}"
    resumed = sum(1 for c in report.cases if c.status == "resumed")
    if resumed:
        summary += f" ({resumed} carried forward from the journal)"
    if report.failed:
        summary += f"; {len(report.failed)} input(s) failed"
    out.print(summary + ".", soft_wrap=True, markup=False)
    print_interrupted(report, "input", reported=False)
    raise typer.Exit(report.exit_status)


predict_command.__doc__ = (predict_command.__doc__ or "") + EXAMPLES
