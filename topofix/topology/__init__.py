"""Topology of masks and probability maps: connectivity conventions, exact Betti numbers."""

from topofix.topology.betti import betti_numbers, euler_characteristic
from topofix.topology.connectivity import CONNECTIVITIES, DEFAULT_CONNECTIVITY

__all__ = ["CONNECTIVITIES", "DEFAULT_CONNECTIVITY", "betti_numbers", "euler_characteristic"]
