"""Step-indexed training schedules: teacher forcing (scheduled sampling) and the horizon curriculum.

Both are pure functions of the global optimisation step, so a resumed run replays them
exactly.  The learning-rate schedules are PyTorch's own ``torch.optim.lr_scheduler`` classes
(built by :class:`~stgnn.training.trainer.Trainer`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["TEACHER_FORCING", "curriculum_level", "inverse_sigmoid_teacher_forcing", "no_teacher_forcing"]


def inverse_sigmoid_teacher_forcing(step: int, tau: float = 2000.0) -> float:
    """Probability of feeding the ground truth at global step ``step``: ``tau / (tau + exp(step / tau))``.

    The inverse-sigmoid decay of scheduled sampling (Bengio et al. 2015,
    https://arxiv.org/abs/1506.03099) as DCRNN uses it, with ``tau`` = DCRNN's
    ``cl_decay_steps`` (2000).

    Args:
        step: Global optimisation step (0 before the first update).
        tau: Decay constant in steps (> 0).

    Returns:
        A probability in ``[0, 1)``; exactly 0.0 once ``exp(step / tau)`` would overflow.

    Example:
        >>> round(inverse_sigmoid_teacher_forcing(0), 4), inverse_sigmoid_teacher_forcing(10**9)
        (0.9995, 0.0)
    """
    z = step / tau
    if z > 700.0:  # exp overflows float64 a little above 709
        return 0.0
    return tau / (tau + math.exp(z))


def no_teacher_forcing(step: int, tau: float = 2000.0) -> float:
    """Never feed the ground truth (the decoder always consumes its own predictions).

    Example:
        >>> no_teacher_forcing(0)
        0.0
    """
    return 0.0


TEACHER_FORCING: dict[str, Callable[[int, float], float]] = {
    "none": no_teacher_forcing,
    "inverse_sigmoid": inverse_sigmoid_teacher_forcing,
}
"""``train.teacher_forcing`` name -> ``schedule(step, tau)``."""


def curriculum_level(step: int, steps_per_level: int, horizon: int) -> int:
    """How many leading horizon steps the loss covers at global step ``step``.

    The horizon curriculum of MTGNN (Wu et al., KDD 2020): the loss starts on the
    first forecast step and covers one more step every ``steps_per_level`` updates, up to
    ``horizon``.  ``steps_per_level = 0`` disables it (the whole horizon from the start).

    Args:
        step: Global optimisation step (0 before the first update).
        steps_per_level: Updates per added horizon step (0: no curriculum).
        horizon: Forecast steps of the model.

    Example:
        >>> [curriculum_level(s, 10, 3) for s in (0, 9, 10, 25, 1000)]
        [1, 1, 2, 3, 3]
        >>> curriculum_level(0, 0, 12)
        12
    """
    if steps_per_level <= 0:
        return horizon
    return min(horizon, 1 + step // steps_per_level)
