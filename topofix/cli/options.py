"""Typer option definitions shared by every command, so that ``--betti`` or
``--connectivity`` mean and read the same in ``check``, ``correct`` and ``evaluate``."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer


class ConnectivityChoice(str, Enum):
    full = "full"
    face = "face"


class SliceAxis(str, Enum):
    x = "x"
    y = "y"
    z = "z"


class EmptyChoice(str, Enum):
    skip = "skip"
    fail = "fail"


PRIORS_PANEL = "Topological prior"

Betti = Annotated[
    Optional[str],
    typer.Option(
        "--betti",
        "-b",
        metavar="B0,B1[,B2]",
        help="Betti numbers the structure must have: components, loops (holes), cavities. "
        "1,1 = one ring (myocardium); 1,0 = one solid blob; 1,0,0 = one solid 3D object. "
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
        metavar="LABELS=B0,B1[,B2]",
        help="Per-label prior, repeatable; unions with '+'. ACDC example (1 RV, 2 MYO, 3 LV): "
        "--prior 2=1,1 --prior 1=1,0 --prior 3=1,0 --prior 2+3=1,0 --prior 1+3=2,0.",
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
