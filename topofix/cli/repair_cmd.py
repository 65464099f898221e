"""``topofix repair``: the CLI layer over :func:`topofix.files.repair_files` (no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from topofix.batch import parse_shard
from topofix.cli import options
from topofix.cli.console import out, print_error
from topofix.cli.correct_cmd import _summary_line, _summary_table
from topofix.cli.progress import BatchProgress, check_reports, flat_case, print_interrupted, write_run_reports
from topofix.errors import TopofixError
from topofix.map_repair import MAP_SETTINGS
from topofix.outputs import REPORT_CSV, REPORT_JSON, report_paths
from topofix.threads import set_threads

EXAMPLES = """
[bold]Examples[/]

  nnU-Net outputs (nnUNetv2_predict --save_probabilities: case.npz beside case.nii.gz), myocardium ring per slice:
    [cyan]topofix repair nnunet_out/ -o fixed/ --per-slice z --prior '2=1,1|0,0'[/]

  MONAI probability maps (4D NIfTI, channel last axis), a liver that must be one solid object:
    [cyan]topofix repair probs/*.nii.gz -o fixed/ --label 1 --betti 1,0,0[/]

  TotalSegmentator label maps only (pseudo-probabilities from signed distances):
    [cyan]topofix repair seg/ -o fixed/ -p 5=1,0,0[/]

[bold]Inputs[/], recognised by content: nnU-Net v2 [bold].npz[/] files (array 'probabilities', channel first; the segmentation
beside it with the same stem gives the output's name and geometry; nnU-Net's .pkl is never opened); probability
maps as images (a channel axis summing to 1, or one float map in [0, 1] for a single foreground label); label maps
(integer voxels), turned into pseudo-probabilities (a softmax of signed distances to each label's boundary), so
that extra pieces can be removed, holes filled and short gaps bridged.

[bold]The method[/]: the probability map itself is optimised (its logits, Adam) with the persistent-homology loss of
Clough et al. plus a similarity term to the original map, with the rules of topofix correct (per structure and
slice, evidence floor, never worse, plateau), then the repair stage. No network: it works on what your pipeline
already wrote.

[bold]Outputs[/] in DIR: the corrected label map (same name, format and geometry as the segmentation / input),
topofix_report.json / .csv, topofix_journal.jsonl (resume with --skip-existing); with --save-original the input's
label map, with --save-probabilities the optimised map.

[bold]Exit status[/]: 0 every input meets its prior afterwards, 1 some do not, 2 some input could not be processed
(the others still run) or a usage error, 130 / 143 interrupted.
"""


def repair_command(
    inputs: Annotated[list[str], typer.Argument(help="nnU-Net .npz files, probability maps, label maps, folders or glob patterns.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="Folder for the corrected label maps and the report (created if missing).", show_default=False)],
    betti: options.Betti = None,
    label: options.Label = None,
    prior: options.PriorSpecs = None,
    connectivity: options.Connectivity = options.ConnectivityChoice.full,
    per_slice: options.PerSlice = None,
    steps: Annotated[int, typer.Option("--steps", min=0, help="Maximum optimisation steps per input.", rich_help_panel="Optimisation")] = MAP_SETTINGS.steps,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Adam learning rate on the map's logits.", rich_help_panel="Optimisation")] = MAP_SETTINGS.lr,
    lam: Annotated[float, typer.Option("--lambda", min=0.0, help="Weight of the similarity term to the original map.", rich_help_panel="Optimisation")] = MAP_SETTINGS.lam,
    plateau: Annotated[int, typer.Option("--plateau", min=0, help="Stop a failing input (slice) after this many steps without progress (0: never).", rich_help_panel="Optimisation")] = MAP_SETTINGS.plateau or 0,
    evidence_floor: Annotated[float, typer.Option("--evidence-floor", min=0.0, max=1.0, metavar="P", help="A structure whose probability stays below P is reported absent and left as it is.", rich_help_panel="Optimisation")] = MAP_SETTINGS.evidence_floor,
    repair: Annotated[bool, typer.Option("--repair/--no-repair", help="Run the repair stage on what the optimisation leaves broken.", rich_help_panel="Optimisation")] = MAP_SETTINGS.repair,
    save_original: Annotated[bool, typer.Option("--save-original", help="Also write the input's label map, <stem>_original<ext>.", rich_help_panel="Outputs")] = False,
    save_probabilities: Annotated[bool, typer.Option("--save-probabilities", help="Also write the optimised map, <stem>_prob<L><ext>.", rich_help_panel="Outputs")] = False,
    html: Annotated[bool, typer.Option("--html", help="Also write DIR/topofix_report.html (implies --save-original).", rich_help_panel="Outputs")] = False,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Resume: carry forward inputs the journal records as done with the same priors and settings.", rich_help_panel="Outputs")] = False,
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
    """Correct the topology of probability maps or label maps you already have (nnU-Net, MONAI, TotalSegmentator), without the network.

    For each input: judge every structure (and slice) against its prior; if it fails, optimise the map itself with the
    persistent-homology loss plus a similarity term, then the repair stage; write the corrected label map and a report.
    """
    import dataclasses

    from topofix.priors import build_priors

    try:
        shard_part = None if shard is None else parse_shard(shard)
        options.check_cluster(cluster, workers, shard)
    except (TopofixError, ValueError) as error:
        print_error(str(error))
        raise typer.Exit(2) from None
    json_file, csv_file, html_file = report_paths(output, json_path, csv_path, shard_part)
    try:
        priors = [p for p in build_priors(betti, label, prior or []) if p.betti is not None]
        if not priors:
            raise TopofixError("repair needs a prior: --betti B0,B1[,B2] (with --label) or --prior LABELS=B0,B1")
        check_reports([json_file, csv_file, *([html_file] if html else [])], overwrite, skip_existing)
        masks = options.parse_mask_format(output_format, labels)
    except (TopofixError, ValueError) as error:
        print_error(str(error))
        raise typer.Exit(2) from None

    from topofix.files import repair_files

    settings = dataclasses.replace(MAP_SETTINGS, steps=steps, lr=lr, lam=lam, plateau=plateau or None,
                                   evidence_floor=evidence_floor, repair=repair, connectivity=connectivity.value)
    set_threads(threads, workers=workers)
    progress = BatchProgress("repair", quiet)
    try:
        report = repair_files(inputs, priors, output, settings=settings,
                              per_slice=None if per_slice is None else per_slice.value,
                              save_original=save_original or html, save_probabilities=save_probabilities,
                              resume=skip_existing, overwrite=overwrite, on_start=progress.start,
                              on_case=progress.case, on_step=progress.step, shard=shard_part, workers=workers, threads=threads,
            cluster=cluster, output_format=masks.format, labels=masks.label_table or None)
    except (TopofixError, ValueError) as error:
        progress.close()
        print_error(str(error))
        raise typer.Exit(2) from None
    progress.close()
    cases = [flat_case(c) for c in report.cases]
    if not quiet and cases:
        out.print(_summary_table(cases, title="topofix repair"))
    out.print(_summary_line(report), markup=False)
    try:
        write_run_reports(report, json_file, csv_file, html_file if html else None, output, quiet)
    except (TopofixError, OSError) as error:
        print_error(str(error))
        raise typer.Exit(2) from None
    print_interrupted(report, "input")
    raise typer.Exit(report.exit_status)


repair_command.__doc__ = (repair_command.__doc__ or "") + EXAMPLES
