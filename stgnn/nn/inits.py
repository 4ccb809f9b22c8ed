"""Parameter initialisations shared by the layers."""

from __future__ import annotations

import math

from torch import Tensor, nn

__all__ = ["kaiming_uniform_reset"]


def kaiming_uniform_reset(weight: Tensor, bias: Tensor | None) -> None:
    """``torch.nn.Linear`` / ``Conv*`` default initialisation, in place.

    ``weight`` from ``kaiming_uniform_(a=sqrt(5))`` and ``bias`` from ``U(-1/sqrt(fan_in),
    1/sqrt(fan_in))`` (zero bound when the fan-in is 0), the fan-in being taken from ``weight``
    as ``torch.nn.init`` does (``size(1) * prod(size()[2:])``).  This is the initialisation of
    the reference implementations' ``Conv2d`` layers and of hazdzz/STGCN's graph convolutions.

    Args:
        weight: At least two-dimensional.
        bias: ``None`` or a tensor of any shape.

    Example:
        >>> import torch
        >>> w, b = torch.empty(8, 4, 3), torch.empty(8)
        >>> kaiming_uniform_reset(w, b)
        >>> bool(b.abs().max() <= 1 / math.sqrt(12))
        True
    """
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(bias, -bound, bound)
