"""Batched, differentiable solvers of the decision problems (whole batch at once, float64
inside, exact backward passes from the KKT conditions on the active set — no unrolling)."""
