"""Every rule passes the weighting property suite, and every plugin the method conformance suite
(through the engine: config, runs, resume, determinism, checkpointed state)."""

from __future__ import annotations

from typing import ClassVar

from twcore_method_mtl import (
    FAMO,
    IMTL,
    MGDA,
    AlignedMTL,
    CAGrad,
    DynamicWeightAverage,
    GradNorm,
    NashMTL,
    PCGrad,
    RandomLossWeighting,
    UncertaintyWeighting,
)

from twcore.contract.weighting import Weighting
from twcore.testing import MethodConformance, WeightingProperties


class TestUncertaintyProperties(WeightingProperties):
    def make(self, num_objectives: int, main: int) -> Weighting:
        return UncertaintyWeighting(num_objectives, lr=0.01)


class TestGradNormProperties(WeightingProperties):
    def make(self, num_objectives: int, main: int) -> Weighting:
        return GradNorm(num_objectives, alpha=1.5, lr=0.01)


class TestDWAProperties(WeightingProperties):
    def make(self, num_objectives: int, main: int) -> Weighting:
        return DynamicWeightAverage(num_objectives, period=1)


class TestRLWProperties(WeightingProperties):
    simplex = True
    randomized = True

    def make(self, num_objectives: int, main: int) -> Weighting:
        return RandomLossWeighting(num_objectives, seed=1)


class TestPCGradProperties(WeightingProperties):
    randomized = True

    def make(self, num_objectives: int, main: int) -> Weighting:
        return PCGrad(num_objectives, seed=1)


class TestMGDAProperties(WeightingProperties):
    simplex = True
    weight_tolerance = 1e-9

    def make(self, num_objectives: int, main: int) -> Weighting:
        return MGDA(num_objectives)


class TestMGDALossPlusProperties(TestMGDAProperties):
    def make(self, num_objectives: int, main: int) -> Weighting:
        return MGDA(num_objectives, normalization="loss+")


class TestCAGradProperties(WeightingProperties):
    weight_tolerance = 1e-7

    def make(self, num_objectives: int, main: int) -> Weighting:
        return CAGrad(num_objectives, c=0.4)


class TestNashMTLProperties(WeightingProperties):
    weight_tolerance = 1e-9

    def make(self, num_objectives: int, main: int) -> Weighting:
        return NashMTL(num_objectives, max_norm=0.0)


class TestIMTLProperties(WeightingProperties):
    weight_tolerance = 1e-9

    def make(self, num_objectives: int, main: int) -> Weighting:
        return IMTL(num_objectives, lr=0.01)


class TestAlignedMTLProperties(WeightingProperties):
    weight_tolerance = 1e-9

    def make(self, num_objectives: int, main: int) -> Weighting:
        return AlignedMTL(num_objectives)


class TestFAMOProperties(WeightingProperties):
    def make(self, num_objectives: int, main: int) -> Weighting:
        return FAMO(num_objectives)


class _Conformance(MethodConformance):
    steps: ClassVar[int] = 4


class TestUWConformance(_Conformance):
    method = "uw"


class TestGradNormConformance(_Conformance):
    method = "gradnorm"


class TestDWAConformance(_Conformance):
    method = "dwa"
    method_options: ClassVar[dict[str, object]] = {"period": 1}


class TestRLWConformance(_Conformance):
    method = "rlw"


class TestPCGradConformance(_Conformance):
    method = "pcgrad"


class TestMGDAConformance(_Conformance):
    method = "mgda"


class TestMGDAUBConformance(_Conformance):
    method = "mgda-ub"


class TestCAGradConformance(_Conformance):
    method = "cagrad"


class TestNashMTLConformance(_Conformance):
    method = "nash-mtl"


class TestIMTLConformance(_Conformance):
    method = "imtl"


class TestAlignedMTLConformance(_Conformance):
    method = "aligned-mtl"


class TestFAMOConformance(_Conformance):
    method = "famo"
