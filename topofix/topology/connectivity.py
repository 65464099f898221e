"""The one connectivity convention shared by every topofix command.

A binary mask has no topology until we say which voxels touch. topofix offers the
two conventions of cubical homology (see ``shared/notes/method.md``):

``"full"`` (the default everywhere)
    Voxels are the *top cells* of the cubical complex (gudhi's
    ``top_dimensional_cells``, CubicalRipser's ``T``): the foreground is
    8-connected in 2D / 26-connected in 3D, the background 4 / 6.
    Two pixels touching at a corner are one component; this is what
    radiologists see as "touching" and what nnU-Net/MONAI connected-component
    post-processing uses for the foreground.

``"face"``
    Voxels are the *vertices* of the complex (gudhi's ``vertices``,
    CubicalRipser's ``V``, ``cripser``'s default): foreground 4 / 6-connected,
    background 8 / 26.

The pairing of foreground and background neighbourhoods is what makes Betti
numbers well defined (a 4/4 or 8/8 pair breaks Alexander duality: a diagonal
line would be both a wall and a door).
"""

from __future__ import annotations

from topofix.choices import Connectivity

CONNECTIVITIES: tuple[str, ...] = Connectivity.values()
DEFAULT_CONNECTIVITY: str = Connectivity.full.value


def check_connectivity(connectivity: Connectivity | str) -> str:
    """Return ``connectivity`` (as a plain string) if it names a convention, else raise ``ValueError``."""
    if connectivity not in CONNECTIVITIES:
        raise ValueError(
            f"unknown connectivity {connectivity!r}; expected one of {', '.join(CONNECTIVITIES)}"
        )
    return str(connectivity)


def neighbourhoods(connectivity: str, ndim: int) -> tuple[int, int]:
    """Neighbourhood sizes ``(foreground, background)`` for ``ndim`` (2 or 3).

    Returned as the counts used by ``cc3d`` (4/8 in 2D, 6/18/26 in 3D).
    """
    check_connectivity(connectivity)
    if ndim == 2:
        return (8, 4) if connectivity == "full" else (4, 8)
    if ndim == 3:
        return (26, 6) if connectivity == "full" else (6, 26)
    raise ValueError(f"Betti numbers are defined here for 2D or 3D masks, got {ndim}D")
