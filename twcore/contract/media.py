"""Rich values a method can log besides numbers; each backend renders them its own way."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Image:
    """A picture: a heat map [H, W] (floats, shown with a colour map) or an RGB array [H, W, 3].

    Example: the learned metric Λ for one input, logged as ``Image(metric.cpu().numpy())``.
    """

    pixels: np.ndarray
    caption: str = ""


@dataclass
class LinePlot:
    """A curve y(x), e.g. a learned loss as a function of the predicted probability."""

    x: list[float]
    y: list[float]
    title: str = ""
    x_label: str = "x"
    y_label: str = "y"
    series: dict[str, list[float]] = field(default_factory=dict)
    """Optional extra curves over the same x, by name."""


MEDIA_TYPES = (Image, LinePlot)
