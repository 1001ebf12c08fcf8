"""GradCos (Du, Czarnecki, Jayakumar, Farajtabar, Pascanu, Lakshminarayanan): use an auxiliary
loss only as far as its gradient agrees with the main task's."""

from twcore_method_gradcos.method import GradCos, GradCosConfig, combine_shared_gradients

__all__ = ["GradCos", "GradCosConfig", "combine_shared_gradients"]
