"""Shortest paths on a k × k grid from the top-left to the bottom-right node, moving east or
south (PyEPO's shortest-path problem), for batches of edge costs.

minimise_z cᵀz over the 0/1 indicators z of the edges of a monotone path

The grid is a DAG, so the optimum is exact dynamic programming over the nodes in order,
vectorised over the batch (:func:`shortest_paths`). The differentiable relaxation
(:func:`soft_paths`) is the entropy-regularised problem min_μ E_μ[cᵀz] − τ H(μ) over
distributions μ on the paths: its solution is the Gibbs distribution μ ∝ exp(−cᵀz/τ), whose edge
marginals are the gradient of the soft minimum τ log Σ_paths exp(−cᵀz/τ) — a log-sum-exp
recursion over the same DAG, differentiated exactly by autograd (no iterations to unroll).
Edges are numbered east edges first (row-major, (k) rows × (k − 1)), then south edges (row-major,
(k − 1) rows × k): 2k(k − 1) edges, 40 for k = 5. (PyEPO numbers the same edges in another
order; compare paths edge by edge only after mapping one numbering to the other.)
"""

from __future__ import annotations

from functools import cache

import torch
from torch import Tensor


def num_edges(grid: int) -> int:
    """2k(k − 1) edges of a k × k grid."""
    return 2 * grid * (grid - 1)


@cache
def incoming(grid: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    """For each node (row-major), its incoming edges as (edge index, source node)."""
    east = grid * (grid - 1)
    edges: list[list[tuple[int, int]]] = [[] for _ in range(grid * grid)]
    for row in range(grid):
        for col in range(grid - 1):  # east edge (row, col) → (row, col + 1)
            edges[row * grid + col + 1].append((row * (grid - 1) + col, row * grid + col))
    for row in range(grid - 1):
        for col in range(grid):  # south edge (row, col) → (row + 1, col)
            edges[(row + 1) * grid + col].append((east + row * grid + col, row * grid + col))
    return tuple(tuple(e) for e in edges)


def _check(costs: Tensor, grid: int) -> None:
    if costs.dim() != 2 or costs.shape[-1] != num_edges(grid):
        raise ValueError(f"edge costs must be [B, {num_edges(grid)}], got {tuple(costs.shape)}")
    if not torch.isfinite(costs).all():
        raise ValueError("edge costs contain NaN or inf")


def shortest_paths(costs: Tensor, grid: int) -> Tensor:
    """The 0/1 edge indicators [B, E] of a cheapest path per instance (ties: the first
    incoming edge in the numbering)."""
    _check(costs, grid)
    c = costs.detach().double()
    rows = torch.arange(len(c), device=c.device)
    distance = [torch.zeros(len(c), dtype=torch.float64, device=c.device)]
    via: list[Tensor] = [torch.zeros(len(c), dtype=torch.long, device=c.device)]
    edge_of: list[Tensor] = [torch.zeros(len(c), dtype=torch.long, device=c.device)]
    for node in range(1, grid * grid):
        options = incoming(grid)[node]
        candidates = torch.stack([distance[src] + c[:, edge] for edge, src in options], dim=1)
        best = candidates.argmin(dim=1)
        distance.append(candidates[rows, best])
        edges = torch.tensor([edge for edge, _ in options], device=c.device)
        sources = torch.tensor([src for _, src in options], device=c.device)
        edge_of.append(edges[best])
        via.append(sources[best])
    path = torch.zeros_like(c)
    node = torch.full((len(c),), grid * grid - 1, dtype=torch.long, device=c.device)
    edge_table, via_table = torch.stack(edge_of, dim=1), torch.stack(via, dim=1)
    for _ in range(2 * (grid - 1)):  # every monotone path has 2(k − 1) edges
        path[rows, edge_table[rows, node]] = 1.0
        node = via_table[rows, node]
    return path.to(costs.dtype)


def soft_minimum(costs: Tensor, grid: int, temperature: float) -> Tensor:
    """−τ log Σ_paths exp(−cᵀz/τ) per instance [B] (→ the shortest path's cost as τ → 0)."""
    c = costs.double() / temperature
    potential = [torch.zeros(len(c), dtype=torch.float64, device=c.device)]
    for node in range(1, grid * grid):
        terms = [potential[src] - c[:, edge] for edge, src in incoming(grid)[node]]
        potential.append(torch.logsumexp(torch.stack(terms, dim=1), dim=1))
    return -temperature * potential[-1]


def soft_paths(costs: Tensor, grid: int, temperature: float) -> Tensor:
    """The Gibbs distribution's edge marginals [B, E] in [0, 1] (differentiable; the flow of one
    unit from the source to the sink, → a shortest path as τ → 0)."""
    _check(costs, grid)
    if temperature <= 0:
        raise ValueError(f"soft path temperature={temperature} must be > 0")
    with torch.enable_grad():
        leaf = costs.double()
        if not leaf.requires_grad:
            leaf = leaf.detach().requires_grad_(True)
        (marginals,) = torch.autograd.grad(
            soft_minimum(leaf, grid, temperature).sum(), leaf, create_graph=costs.requires_grad
        )
    return marginals.to(costs.dtype)
