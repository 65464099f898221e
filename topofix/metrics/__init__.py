"""Segmentation metrics used by ``topofix evaluate``, usable on their own.

All functions take numpy arrays (non-zero = foreground for binary metrics) of
the same shape; distances take a ``spacing`` per array axis (or a
:class:`topofix.io.Geometry`). The exact definitions, and the rules for empty
masks, are in each module's docstring:

* :mod:`topofix.metrics.overlap`: :func:`dice`, :func:`mean_label_dice`, :func:`variation_of_information`;
* :mod:`topofix.metrics.surface`: :func:`hausdorff_distance`, :func:`hd95`,
  :func:`average_symmetric_surface_distance`, :func:`surface_distances`;
* :mod:`topofix.metrics.topology`: :func:`betti_error`, :func:`betti_matching`,
  :func:`betti_matching_error` (Stucki et al., ICML 2023).
"""

from topofix.metrics.overlap import dice, mean_label_dice, variation_of_information, vi_terms
from topofix.metrics.surface import (
    SurfaceDistances,
    array_spacing,
    average_symmetric_surface_distance,
    hausdorff_distance,
    hd95,
    surface_distances,
    surface_mask,
)
from topofix.metrics.topology import (
    BettiMatching,
    betti_error,
    betti_matching,
    betti_matching_error,
)

assd = average_symmetric_surface_distance

__all__ = [
    "BettiMatching",
    "SurfaceDistances",
    "array_spacing",
    "assd",
    "average_symmetric_surface_distance",
    "betti_error",
    "betti_matching",
    "betti_matching_error",
    "dice",
    "hausdorff_distance",
    "hd95",
    "mean_label_dice",
    "surface_distances",
    "surface_mask",
    "variation_of_information",
    "vi_terms",
]
