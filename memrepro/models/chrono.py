"""Gate-bias initialisers shared by the gated cells (LSTM, constrained LSTM, JANET).

* standard — Jozefowicz et al. 2015, as restated in SMANN §2.1: forget-gate bias 1, the other
  gate biases 0.
* chrono — Tallec & Ollivier 2018, SMANN eq. (4): b_f ~ log U([1, T_max − 1]), b_i = −b_f, so that
  the forget gate starts with characteristic forgetting times spread over [1, T_max] (SMANN eqs. 2–3).
"""
from __future__ import annotations

import torch
from torch import Tensor

from memrepro.errors import ConfigError

INITS = ("standard", "chrono")


def check_init(init: str, t_max) -> None:
    """Validate ``model.init`` and, for chrono, ``model.t_max`` (it needs T_max − 1 > 1)."""
    if init not in INITS:
        raise ConfigError(f"model.init={init!r}: choose one of {', '.join(INITS)}")
    ok = isinstance(t_max, (int, float)) and not isinstance(t_max, bool) and t_max > 2
    if init == "chrono" and not ok:
        raise ConfigError(f"model.t_max={t_max!r}: chrono init needs the longest dependency length, a number > 2")


def chrono_forget_bias(size: int, t_max: float) -> Tensor:
    """b_f ~ log U([1, T_max − 1]) (SMANN eq. 4); b_i is its negative. Drawn from torch's global RNG,
    which the runner seeds."""
    return torch.empty(size).uniform_(1.0, t_max - 1.0).log_()


def gate_biases(init: str, size: int, t_max=None, forget_bias: float = 1.0) -> tuple[Tensor, Tensor]:
    """(input-gate bias, forget-gate bias) for ``init``; the caller zeroes or keeps the others."""
    if init == "chrono":
        b_f = chrono_forget_bias(size, t_max)
        return -b_f, b_f
    return torch.zeros(size), torch.full((size,), float(forget_bias))
