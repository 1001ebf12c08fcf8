"""AdaLFL (Raymond, Chen, Xue, Zhang): online loss function learning. A small loss network
replaces the task's base loss and is meta-updated after every base step through a one-step
lookahead."""

from twcore_method_adalfl.loss_network import LearnedLoss, LossNetwork, SmoothLeakyReLU
from twcore_method_adalfl.method import AdaLFL, AdaLFLConfig

__all__ = ["AdaLFL", "AdaLFLConfig", "LearnedLoss", "LossNetwork", "SmoothLeakyReLU"]
