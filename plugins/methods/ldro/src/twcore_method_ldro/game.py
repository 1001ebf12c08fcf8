"""The lookahead game of L-DRO.

After a step θ' = θ − α Σ_j w_j g_j on the w-weighted loss, task i's loss is, to first order,

    ℓ_i(θ') ≈ ℓ_i − α Σ_j w_j g_iᵀ g_j = (L w)_i,   L_ij = ℓ_i − λ ĝ_iᵀ ĝ_j,

with the gradients normalised (ĝ = g/‖g‖, so λ absorbs the step size and the gradient scale).
L-DRO picks w to minimise the worst lookahead loss: the matrix game min_w max_v vᵀ L w over two
probability simplices. Among the minimax-optimal w it prefers the one of highest entropy, so it
keeps training on as many tasks as possible.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def lookahead_matrix(losses: Tensor, cosines: Tensor, lookahead: float) -> Tensor:
    """L [K, K] with L_ij = ℓ_i − λ cos(g_i, g_j), for losses [K] and a cosine matrix [K, K]."""
    return losses.unsqueeze(1) - lookahead * cosines


def online_update(weights: Tensor, matrix: Tensor, step_size: float) -> tuple[Tensor, int]:
    """One step of the paper's online algorithm: the best-response row i* = argmax_i (L w)_i and
    the exponentiated update w_j ∝ w_j exp(−η L_{i*j}); returns (new w [K], i*)."""
    best_response = int((matrix @ weights).argmax())
    logits = weights.log() - step_size * matrix[best_response]
    return torch.softmax(logits, dim=0), best_response


def solve_game_exactly(matrix: Tensor, tolerance: float = 1e-7) -> Tensor:
    """The highest-entropy minimax w [K] of min_w max_i (L w)_i over the simplex.

    Two convex programs solved by cvxpy (Clarabel): the linear program for the game's value
    v* = min_w max_i (L w)_i, then max H(w) s.t. L w ≤ v* + tolerance·(1 + |v*|).
    """
    import cvxpy as cp

    values = matrix.detach().double().cpu().numpy()
    count = values.shape[0]
    w = cp.Variable(count, nonneg=True)
    level = cp.Variable()
    game = cp.Problem(cp.Minimize(level), [values @ w <= level, cp.sum(w) == 1])
    game.solve(solver=cp.CLARABEL)
    if game.status != cp.OPTIMAL:
        raise RuntimeError(f"L-DRO's game did not solve: {game.status}")
    minimax = w.value
    slack = tolerance * (1 + abs(float(level.value)))
    widest = cp.Problem(
        cp.Maximize(cp.sum(cp.entr(w))),
        [values @ w <= float(level.value) + slack, cp.sum(w) == 1],
    )
    widest.solve(solver=cp.CLARABEL)
    solution = w.value if widest.status == cp.OPTIMAL else minimax
    solution = np.clip(solution, 0, None)
    return torch.as_tensor(solution / solution.sum(), dtype=matrix.dtype, device=matrix.device)
