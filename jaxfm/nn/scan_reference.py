"""float64 NumPy reference of the selective-scan recurrence (Mamba-1, Alg. 2 of arXiv
2312.00752): the oracle the tests hold ``jaxfm.nn.scan`` and ``jaxfm.nn.mamba`` to.

Deliberately naive: a Python loop over time in float64, written from the published
recurrence and sharing no code with the JAX scans, plus its hand-derived adjoint (reverse
time) for gradient checks. Shapes as in ``jaxfm.nn.scan``; h0 (B, D, N).
"""

import numpy as np


def oracle_forward(x, dt, A, B, C, D, h0):
    """float64 NumPy loop over time; returns y, the states h_0..h_L."""
    b, l, d = x.shape
    h = h0.copy()
    hs = [h]
    y = np.zeros((b, l, d))
    for t in range(l):
        a = np.exp(dt[:, t, :, None] * A[None])
        h = a * h + (dt[:, t] * x[:, t])[..., None] * B[:, t, None, :]
        hs.append(h)
        y[:, t] = (h * C[:, t, None, :]).sum(-1) + D[None] * x[:, t]
    return y, hs


def oracle_grads(x, dt, A, B, C, D, h0, gy):
    """Adjoint of the recurrence for the loss sum(y * gy), float64."""
    _, hs = oracle_forward(x, dt, A, B, C, D, h0)
    b, l, d = x.shape
    g = np.zeros_like(h0)
    gx, gdt, gB, gC = (np.zeros_like(t) for t in (x, dt, B, C))
    gA = np.zeros_like(A)
    for t in reversed(range(l)):
        g = g + gy[:, t, :, None] * C[:, t, None, :]  # dL/dh_t
        gC[:, t] = (gy[:, t, :, None] * hs[t + 1]).sum(1)
        a = np.exp(dt[:, t, :, None] * A[None])
        ga = g * hs[t]  # dL/da_t
        gBx = (g * B[:, t, None, :]).sum(-1)  # dL/d(dt x)
        gdt[:, t] = (ga * A[None] * a).sum(-1) + gBx * x[:, t]
        gA += (ga * dt[:, t, :, None] * a).sum(0)
        gx[:, t] = gBx * dt[:, t] + gy[:, t] * D[None]
        gB[:, t] = (g * (dt[:, t] * x[:, t])[..., None]).sum(1)
        g = g * a
    gD = (gy * x).sum((0, 1))
    return dict(x=gx, dt=gdt, A=gA, B=gB, C=gC, D=gD, h0=g)
