"""Initial-condition samplers, batched over samples (numpy ``Generator`` in, (n, nx) array out).

All domains are x in [0, L) with L = 2, periodic, and cell centres x_i = (i + 1/2) dx.

Departures from the reference, on purpose:

* ``init_multi`` uses the true period L = 2 (the reference/PDEBench uses x_{N-1} - x_0 =
  2 - dx, so its sine sums are not periodic on the grid) and therefore needs no linear
  "detrend" ramp, which in the reference breaks periodicity instead of restoring it.
* Gaussian-bump ICs (KdV, porous medium, Fokker-Planck) are made periodic by summing the
  periodic images of the bump rather than subtracting a linear ramp.
"""

from __future__ import annotations

import numpy as np

#: length of the periodic spatial domain [0, L) of every family (the one definition)
L_DOMAIN = 2.0


def grid(nx: int) -> np.ndarray:
    """Cell centres of the periodic grid on [0, 2)."""
    if nx < 8:
        raise ValueError(f"nx must be at least 8, got {nx}")
    dx = L_DOMAIN / nx
    return (np.arange(nx) + 0.5) * dx


def _minmax(u: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    mn = u.min(axis=-1, keepdims=True)
    mx = u.max(axis=-1, keepdims=True)
    span = np.where(mx - mn > 1e-12, mx - mn, 1.0)
    return lo + (hi - lo) * (u - mn) / span


def init_multi(rng: np.random.Generator, n: int, nx: int, k_tot: int = 4, num_k: int = 2) -> np.ndarray:
    """PDEBench-style random superposition of sines, in [0, 1].

    ``num_k`` distinct wavenumbers from 1..k_tot, amplitudes U(0,1), phases U(0,2pi); then
    with probability 0.1 the absolute value, a random sign, and with probability 0.1 a smooth
    tanh window; finally min-max normalised to [0, 1].
    """
    x = grid(nx)
    # choose num_k distinct wavenumbers per sample via random permutation keys
    keys = rng.random((n, k_tot))
    ks = np.argsort(keys, axis=1)[:, :num_k] + 1  # (n, num_k) in 1..k_tot
    amp = rng.random((n, num_k))
    phs = 2 * np.pi * rng.random((n, num_k))
    kx = 2 * np.pi * ks[..., None] * x / L_DOMAIN  # (n, num_k, nx)
    u = np.sum(amp[..., None] * np.sin(kx + phs[..., None]), axis=1)
    use_abs = rng.random(n) < 0.1
    u = np.where(use_abs[:, None], np.abs(u), u)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    u = u * sign[:, None]
    use_window = rng.random(n) < 0.1
    xl = rng.uniform(0.1, 0.45, n) * L_DOMAIN
    xr = rng.uniform(0.55, 0.9, n) * L_DOMAIN
    width = 0.5 * L_DOMAIN / 8  # smooth, many cells wide
    # sum over periodic images so the window itself is periodic on [0, L)
    window = sum(0.5 * (np.tanh((x + m * L_DOMAIN - xl[:, None]) / width)
                        - np.tanh((x + m * L_DOMAIN - xr[:, None]) / width)) for m in (-1, 0, 1))
    u = np.where(use_window[:, None], u * window, u)
    return _minmax(u)


def sines(rng: np.random.Generator, n: int, nx: int) -> np.ndarray:
    """a1 sin(pi n1 x + p1) + a2 sin(pi n2 x + p2), n in {1, 2}, min-max normalised to [0, 1]."""
    x = grid(nx)
    nk = rng.integers(1, 3, size=(n, 2))
    amp = rng.random((n, 2))
    phs = 2 * np.pi * rng.random((n, 2))
    u = np.sum(amp[..., None] * np.sin(np.pi * nk[..., None] * x + phs[..., None]), axis=1)
    return _minmax(u)


def _periodic_bump(x: np.ndarray, centre: np.ndarray, width: np.ndarray, power: float = 2.0,
                   scale: float = 1.0) -> np.ndarray:
    """Sum over periodic images m of exp(-scale * |x - c - mL| ** power / width ** power)."""
    out = 0.0
    for m in (-2, -1, 0, 1, 2):  # five images: the seam mismatch is below 1e-30
        d = (x - centre[:, None] - m * L_DOMAIN) / width[:, None]
        out = out + np.exp(-scale * np.abs(d) ** power)
    return out


def kdv_gaussians(rng: np.random.Generator, n: int, nx: int) -> np.ndarray:
    """Two Gaussians with random signs (mu ~ U(.5,1.5), sigma ~ U(.3,.5)), scaled to [0, 0.5]."""
    x = grid(nx)
    u = np.zeros((n, nx))
    for _ in range(2):
        mu = rng.uniform(0.5, 1.5, n)
        sig = rng.uniform(0.3, 0.5, n)
        sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
        u += sign[:, None] * _periodic_bump(x, mu, sig, scale=0.5)
    return _minmax(u, 0.0, 0.5)


def gaussian_bump(rng: np.random.Generator, n: int, nx: int) -> np.ndarray:
    """Porous medium: exp(-A (x - c)^2 / (2 s^2)), A ~ U(9, 11), c, s ~ U(.9, 1.1); in [0, 1]."""
    x = grid(nx)
    a = rng.uniform(9.0, 11.0, n)
    c = rng.uniform(0.9, 1.1, n)
    s = rng.uniform(0.9, 1.1, n)
    u = _periodic_bump(x, c, s / np.sqrt(a), scale=0.5)
    return _minmax(u)


def fplanck_gaussian(rng: np.random.Generator, n: int, nx: int) -> np.ndarray:
    """Fokker-Planck: exp(-((x - mu)/sigma)^2), mu ~ U(.5,1.5), sigma ~ U(.1,.5), unit sum."""
    x = grid(nx)
    mu = rng.uniform(0.5, 1.5, n)
    sig = rng.uniform(0.1, 0.5, n)
    p = _periodic_bump(x, mu, sig, scale=1.0)
    return p / p.sum(axis=-1, keepdims=True)


def gaussian_process(rng: np.random.Generator, n: int, nx: int, length: float = 0.2) -> np.ndarray:
    """Periodic Gaussian process (RBF kernel on the circle, length scale ``length``) in [0, 1].

    Sampled spectrally: the periodic RBF kernel is diagonal in Fourier space, so one FFT
    per batch replaces the reference's dense SVD-based sampler.
    """
    k = np.fft.rfftfreq(nx, d=L_DOMAIN / nx) * 2 * np.pi
    spec = np.exp(-0.25 * (k * length) ** 2)
    coef = rng.standard_normal((n, k.size)) + 1j * rng.standard_normal((n, k.size))
    u = np.fft.irfft(coef * spec, n=nx, axis=-1)
    return _minmax(u)


IC_SAMPLERS = {
    "init_multi": init_multi,
    "sines": sines,
    "kdv_gaussians": kdv_gaussians,
    "gaussian_bump": gaussian_bump,
    "fplanck_gaussian": fplanck_gaussian,
    "gaussian_process": gaussian_process,
}
