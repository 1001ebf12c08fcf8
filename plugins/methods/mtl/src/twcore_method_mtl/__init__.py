"""The classic multitask weightings, each a rule for any training loop and an engine plugin:
uncertainty weighting (``uw``), GradNorm, DWA, random loss weighting (``rlw``), PCGrad, MGDA and
MGDA-UB, CAGrad, Nash-MTL, IMTL, Aligned-MTL and FAMO. The rules that combine gradients
subclass :class:`twcore.contract.GramWeighting`: they need only the Gram matrix of the
objectives' gradients."""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports

if TYPE_CHECKING:
    from twcore_method_mtl.aligned_mtl import AlignedMTL, alignment_matrix
    from twcore_method_mtl.cagrad import CAGrad, conflict_averse_weights
    from twcore_method_mtl.dwa import DynamicWeightAverage
    from twcore_method_mtl.famo import FAMO
    from twcore_method_mtl.gradnorm import GradNorm
    from twcore_method_mtl.imtl import IMTL, impartial_coefficients
    from twcore_method_mtl.mgda import MGDA
    from twcore_method_mtl.nash_mtl import NashMTL, bargaining_coefficients
    from twcore_method_mtl.pcgrad import PCGrad, surgery_coefficients
    from twcore_method_mtl.rlw import RandomLossWeighting
    from twcore_method_mtl.simplex import min_norm_weights, newton_on_simplex, simplex_qp
    from twcore_method_mtl.uncertainty import UncertaintyWeighting

__all__ = [
    "FAMO",
    "IMTL",
    "MGDA",
    "AlignedMTL",
    "CAGrad",
    "DynamicWeightAverage",
    "GradNorm",
    "NashMTL",
    "PCGrad",
    "RandomLossWeighting",
    "UncertaintyWeighting",
    "alignment_matrix",
    "bargaining_coefficients",
    "conflict_averse_weights",
    "impartial_coefficients",
    "min_norm_weights",
    "newton_on_simplex",
    "simplex_qp",
    "surgery_coefficients",
]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
