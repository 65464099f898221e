"""``topofix correct``: the CLI layer over :func:`topofix.correction.correct`, for a folder of scans."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from topofix.batch import parse_shard
from topofix.cli import options
from topofix.cli.console import out, print_error, print_warning
from topofix.cli.progress import (
    BatchProgress,
    check_reports,
    flat_case,
    print_interrupted,
    print_threshold_warning,
    write_run_reports,
)
from topofix.correction import CorrectionSettings
from topofix.errors import TopofixError
from topofix.outputs import REPORT_CSV, REPORT_JSON, report_paths
from topofix.threads import set_threads

_DEFAULTS = CorrectionSettings()  # one home for the defaults: the library's
EXAMPLES = """
[bold]Examples[/]

  Myocardium (label 2) must be one ring on every short-axis slice; a 2D network on 3D stacks:
    [cyan]topofix correct stacks/ -m unet2d.pt -o fixed/ --per-slice z --prior 2=1,1[/]

  The ACDC priors (1 RV, 2 MYO, 3 LV) on 2D slices, keeping the uncorrected masks beside:
    [cyan]topofix correct slices/ -m unet.onnx -o fixed/ -p 1=1,0 -p 2=1,1 -p 3=1,0 -p 1+3=2,0 --save-original[/]

  A liver in 3D must be one solid object, sliding windows on the GPU, resume an interrupted batch:
    [cyan]topofix correct ct/ -m unet3d.pt -o fixed/ --label 1 --betti 1,0,0 --patch-size 96 --device cuda --skip-existing[/]

[bold]Outputs[/] in DIR: the corrected mask under the input's name (same format and geometry, the model's
labels; inputs that share a file name keep their path relative to the inputs' common folder instead);
topofix_report.json and topofix_report.csv (priors, Betti numbers before/after, steps, stop reason,
seconds, share of voxels changed, Dice original vs corrected); with --save-original
<stem>_original<ext>, with --save-probabilities <stem>_prob<L><ext>. Every file is written to a hidden
temporary name, read back and only then renamed into place.

[bold]Journal and resume[/]: each scan is recorded in DIR/topofix_journal.jsonl the moment it finishes
(model content hash, priors, settings, results). An interrupted batch (Ctrl-C, docker stop, a crash)
loses at most the scan in progress: rerun with --skip-existing and the scans journaled under the same
model, priors and settings (whose outputs still read back) are carried forward with their results; the
others are redone. Two runs on one DIR at the same time: the second is refused.

[bold]Absent structures[/]: where a structure's probability stays below --evidence-floor in a scan (or a
slice with --per-slice), nothing is corrected there: the mask is left as predicted and the report marks it
"absent". Write the prior with an alternative, e.g. --prior '2=1,1|0,0', when absence is acceptable.

[bold]Exit status[/]: 0 every scan meets its prior afterwards (an absent structure counts as met only if
its prior allows it, as in '2=1,1|0,0'), 1 some do not (including absent structures whose prior expects
them: the report says "absent"), 2 some scan could not be processed or a usage error (the other scans
still run), 130 / 143 interrupted by SIGINT / SIGTERM (the report lists the scans that finished).
"""


def _fmt(values) -> str:
    return "-" if values is None else ",".join(str(v) for v in values)


def _betti_text(rows: list[list[int]], failing: list[int]) -> str:
    """Whole image: its Betti numbers; per slice: how many slices fail."""
    if len(rows) == 1:
        return _fmt(rows[0])
    return f"{len(failing)}/{len(rows)} fail" if failing else f"{len(rows)} ok"



def _target_priors(betti, label, prior, loss_form: str) -> list:
    """The priors with Betti numbers (correct needs at least one), after checking ``--loss``
    (a plain option, not a Typer choice, so that a wrong name is one line like every usage error)."""
    from topofix.priors import build_priors

    if loss_form not in options.LossChoice.values():
        raise TopofixError(f"--loss {loss_form!r}: expected one of {', '.join(options.LossChoice.values())}")

    priors = [p for p in build_priors(betti, label, prior or []) if p.betti is not None]
    if not priors:
        raise TopofixError("correct needs a prior: --betti B0,B1[,B2] (with --label) or --prior LABELS=B0,B1")
    return priors


def _print_warnings(report, model, *, threshold_given: bool) -> None:
    """The network's warnings (once) and each case's (what predict would have said about its output)."""
    for warning in report.warnings:
        print_warning(f"{model}: {warning}")
    print_threshold_warning(report, given=threshold_given)
    for case in report.cases:
        for warning in case.result.get("warnings") or []:
            print_warning(f"{case.path}: {warning}")

def _summary_table(cases: list[dict], title: str = "topofix correct") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("scan", no_wrap=True)
    for name, justify in ( ("prior", "left"), ("before", "right"), ("after", "right"),
                          ("steps", "right"), ("stop", "left"), ("s", "right"), ("Dice", "right")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]  # literals above
    for case in cases:
        name = escape(os.path.basename(case["path"]))
        if case.get("status") == "error":
            table.add_row(name, "", "", "", "", "[bold red]error[/]", "", "")
            continue
        for i, prior in enumerate(case.get("priors") or []):
            before = _betti_text(prior["betti_before"], prior["failing_slices_before"])
            after = _betti_text(prior["betti_after"], prior["failing_slices_after"])
            before = f"[green]{before}[/]" if prior["met_before"] else f"[red]{before}[/]"
            after = f"[green]{after}[/]" if prior["met_after"] else f"[bold red]{after}[/]"
            first = i == 0
            table.add_row(
                name if first else "", prior["prior"].replace("foreground=", "foreground "), before, after,
                str(case["steps"]) if first else "", (case["stop_reason"] or "") if first else "",
                f"{case['seconds']:.1f}" if first else "",
                f"{case['dice_original_corrected']:.3f}" if first else "",
            )
    return table


def correct_command(
    inputs: Annotated[list[str], typer.Argument(help="Scans (NIfTI, MHA/MHD, NRRD, PNG), folders or glob patterns.", show_default=False)],
    model: options.Model,
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="Folder for the corrected masks and the report (created if missing).", show_default=False)],
    betti: options.Betti = None,
    label: options.Label = None,
    prior: options.PriorSpecs = None,
    connectivity: options.Connectivity = options.ConnectivityChoice.full,
    steps: Annotated[int, typer.Option("--steps", min=0, help="Maximum optimisation steps per scan.", rich_help_panel="Optimisation")] = _DEFAULTS.steps,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Adam learning rate on the network's weights.", rich_help_panel="Optimisation")] = _DEFAULTS.lr,
    lam: Annotated[float, typer.Option("--lambda", min=0.0, help="Weight of the similarity term: mean squared difference between current and original probabilities.", rich_help_panel="Optimisation")] = _DEFAULTS.lam,
    loss_form: Annotated[str, typer.Option("--loss", metavar="|".join(options.LossChoice.values()), help="Topological objective: squared (Clough et al.), linear (Byrne et al.), mixed (squared near the target, linear far from it) or dense (every pixel that must change for a bar to be born or die, with gradients that survive saturated probabilities).", rich_help_panel="Optimisation")] = _DEFAULTS.form,
    temperature: Annotated[float, typer.Option("--temperature", min=1.0, help="Compute the bars on tempered probabilities softmax(log p / T): T > 1 keeps gradients alive where the network is confident.", rich_help_panel="Optimisation")] = _DEFAULTS.temperature,
    plateau: Annotated[int, typer.Option("--plateau", min=0, help="A failing scan (slice) that made no progress (lower Betti error, or topological loss 0.5% below its best) for this many steps is stuck: escalate, or stop (0: never; run --steps).", rich_help_panel="Optimisation")] = _DEFAULTS.plateau or 0,
    escalate: Annotated[int, typer.Option("--escalate", min=0, help="On a plateau, this many times, multiply --lr by 10 and divide --lambda by 10 before stopping (gentle first, stronger only while stuck; never-worse and the evidence floor still apply).", rich_help_panel="Optimisation")] = _DEFAULTS.escalate,
    evidence_floor: Annotated[float, typer.Option("--evidence-floor", min=0.0, max=1.0, metavar="P", help="A structure whose probability stays below P in a scan (or slice) is reported absent and left as predicted; the repair stage never closes a loop or keeps a component below P.", rich_help_panel="Optimisation")] = _DEFAULTS.evidence_floor,
    repair: Annotated[bool, typer.Option("--repair/--no-repair", help="When fine-tuning stops without meeting the prior, bring the mask to it by the smallest change the probability map supports (remove/fill in order of persistence, close loops along the most probable path above the evidence floor).", rich_help_panel="Optimisation")] = _DEFAULTS.repair,
    roi: Annotated[bool, typer.Option("--roi/--no-roi", help="Compute the topological term in the bounding box of the foreground (probability >= 0.5) plus 2 voxels.", rich_help_panel="Optimisation")] = True,
    threshold: Annotated[Optional[float], typer.Option("--threshold", metavar="P", help=options.THRESHOLD_HELP, show_default=False, rich_help_panel="Optimisation")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (results are deterministic on the CPU).", rich_help_panel="Optimisation")] = 0,
    always: Annotated[bool, typer.Option("--always", help="Fine-tune even scans whose original mask already meets the prior.", rich_help_panel="Optimisation")] = False,
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
    save_original: Annotated[bool, typer.Option("--save-original", help="Also write the uncorrected prediction, <stem>_original<ext>.", rich_help_panel="Outputs")] = False,
    save_probabilities: Annotated[bool, typer.Option("--save-probabilities", help="Also write the corrected probabilities, <stem>_prob<L><ext> (the fine-tuned network's; the repair stage changes the labels only).", rich_help_panel="Outputs")] = False,
    html: Annotated[bool, typer.Option("--html", help="Also write DIR/topofix_report.html, a self-contained visual report (implies --save-original).", rich_help_panel="Outputs")] = False,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Resume: carry forward the scans the journal records as done with the same model, priors and settings (their outputs are read back first); redo the rest.", rich_help_panel="Outputs")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs and reports.", rich_help_panel="Outputs")] = False,
    json_path: Annotated[Optional[Path], typer.Option("--json", metavar="FILE", help=f"JSON report (default DIR/{REPORT_JSON}).", rich_help_panel="Outputs")] = None,
    csv_path: Annotated[Optional[Path], typer.Option("--csv", metavar="FILE", help=f"CSV report (default DIR/{REPORT_CSV}).", rich_help_panel="Outputs")] = None,
    threads: options.Threads = None,
    workers: options.Workers = 1,
    shard: options.Shard = None,
    cluster: options.Cluster = None,
    output_format: options.OutputFormat = options.OutputFormatChoice.auto,
    labels: options.Labels = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no table; errors and the summary line only.")] = False,
) -> None:
    """Correct the topology of your network's segmentations, scan by scan, with a Betti-number prior.

    For each scan: predict; if the mask breaks the prior, fine-tune a fresh copy of the network on that
    scan alone with the persistent-homology loss (Clough et al., TPAMI 2022) plus a similarity term to
    the original prediction; write the corrected mask and a before/after report.
    """
    try:
        shard_part = None if shard is None else parse_shard(shard)
        options.check_cluster(cluster, workers, shard)
    except (TopofixError, ValueError) as error:
        print_error(str(error))
        raise typer.Exit(2) from None
    json_file, csv_file, html_file = report_paths(output, json_path, csv_path, shard_part)
    try:
        priors = _target_priors(betti, label, prior, loss_form)
        patch = options.parse_patch_size(patch_size)
        multiple = options.parse_pad_multiple(pad_multiple)
        threshold_value = options.parse_threshold(threshold)
        masks = options.parse_mask_format(output_format, labels)
        nnunet = options.nnunet_selection(folds, configuration, checkpoint, disable_tta)
        if not 0.0 <= overlap < 1.0:
            raise TopofixError(f"--overlap {overlap}: must be in [0, 1)")
        check_reports([json_file, csv_file, *([html_file] if html else [])], overwrite, skip_existing)
    except (TopofixError, ValueError) as error:
        print_error(str(error))
        raise typer.Exit(2) from None

    from topofix.files import Inference, correct_files
    from topofix.models.contract import ModelContract

    settings = CorrectionSettings(
        steps=steps, lr=lr, lam=lam, threshold=threshold_value, connectivity=connectivity.value, form=loss_form,
        temperature=temperature, plateau=plateau or None, escalate=escalate, evidence_floor=evidence_floor,
        repair=repair, roi_threshold=0.5 if roi else None, always=always, seed=seed,
    )
    inference = Inference(
        contract=ModelContract(normalize=normalize.value, activation=activation.value, pad_multiple=multiple),
        per_slice=None if per_slice is None else per_slice.value, patch_size=patch, overlap=overlap,
        device=device.value, threshold=threshold_value, nnunet=nnunet,
    )
    set_threads(threads, workers=workers)
    progress = BatchProgress("correct", quiet)
    try:
        report = correct_files(
            inputs, model, priors, output, settings=settings, inference=inference,
            save_original=save_original or html, save_probabilities=save_probabilities, resume=skip_existing,
            overwrite=overwrite, on_start=progress.start, on_case=progress.case, on_step=progress.step,
            shard=shard_part, workers=workers, threads=threads,
            cluster=cluster, output_format=masks.format, labels=masks.label_table or None,
        )
    except (TopofixError, ValueError) as error:
        progress.close()
        print_error(str(error))
        raise typer.Exit(2) from None
    progress.close()
    _print_warnings(report, model, threshold_given=threshold is not None)

    cases = [flat_case(c) for c in report.cases]
    if not quiet and cases:
        out.print(_summary_table(cases))
    out.print(_summary_line(report), markup=False)
    try:
        write_run_reports(report, json_file, csv_file, html_file if html else None, output, quiet)
    except (TopofixError, OSError) as error:
        print_error(str(error))
        raise typer.Exit(2) from None
    print_interrupted(report, "scan")
    raise typer.Exit(report.exit_status)


def _summary_line(report) -> str:
    cases = [c for c in report.cases if c.ok]
    not_met = [c for c in cases if c.outcome == "not met"]
    fixed = sum(1 for c in cases if c.outcome == "corrected")
    absent = sum(1 for c in cases if c.result.get("absent"))
    repaired = sum(1 for c in cases if c.result.get("repaired"))
    resumed = sum(1 for c in cases if c.status == "resumed")
    summary = (f"{len(cases)} scan(s) processed: {fixed} corrected, {len(cases) - len(not_met) - fixed} "
               f"already met the prior, {len(not_met)} still do not")
    if repaired:
        summary += f" ({repaired} with the repair stage)"
    if absent:
        summary += f"; {absent} with a structure absent (no evidence: left as predicted)"
    if resumed:
        summary += f"; {resumed} carried forward from the journal (--skip-existing)"
    if report.failed:
        summary += f"; {len(report.failed)} could not be processed"
    return summary + "."


correct_command.__doc__ = (correct_command.__doc__ or "") + EXAMPLES
