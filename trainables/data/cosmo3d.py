"""Synthetic dark-matter density cubes after MLPerf HPC CosmoFlow: particle counts in 4 redshift channels.

Physics, following SCIENCE.md's recipe (vectorised with NumPy, one chunk of cubes at a time):

* **Cosmology**: u ∈ [−1, 1] per parameter of (Ω_m, σ_8, n_s, H_0), physical = fiducial · (1 + 0.1 u),
  fiducial = (0.3, 0.8, 0.96, 70). u for Ω_m, σ_8 and n_s is drawn uniformly in [−1, 1]; u for H_0 is 0:
  h would enter only through Γ = Ω_m h and blur Ω_m.
* **Linear power spectrum** (k in h/Mpc, P in (Mpc/h)³): P(k) = A · k^{n_s} · T²(q) with the BBKS
  transfer function T(q) = ln(1 + 2.34q)/(2.34q) · [1 + 3.89q + (16.1q)² + (5.46q)³ + (6.71q)⁴]^(−1/4),
  q = k/Γ, Γ = Ω_m h (that is q = k/(Γh) for k in 1/Mpc). A is fixed by σ_8:
  σ²(R = 8 Mpc/h) = (1/2π²) ∫ k² P(k) W²(kR) dk with the top hat W(x) = 3(sin x − x cos x)/x³,
  integrated on a log-k grid.
* **Gaussian field** on the periodic S³ grid of side L (cell Δ = L/S): g = IFFT[FFT(w) · √(P(|k|)/Δ³)]
  with w unit white noise, the zero mode removed, so that ⟨|Δ³ FFT(g)|²⟩/L³ = P(k); its variance is
  σ_g² = Σ_{k≠0} P(k)/L³ over the grid's modes.
* **Redshift channels** z = 0, 0.5, 1.5, 3 (the public order): the same noise scaled by the linear growth
  factor D(z) of flat ΛCDM in the Carroll–Press–Turner (1992) approximation,
  D(z) = g(z)/((1 + z) g(0)), g = (5/2) Ω_m(z) / [Ω_m(z)^{4/7} − Ω_Λ(z) + (1 + Ω_m(z)/2)(1 + Ω_Λ(z)/70)],
  Ω_m(z) = Ω_m (1 + z)³/E²(z), Ω_Λ(z) = (1 − Ω_m)/E²(z), E² = Ω_m (1 + z)³ + 1 − Ω_m; D(0) = 1.
* **Lognormal density and particles**: δ_z = exp(D g − D² σ_g²/2) − 1 (mean 0, δ ≥ −1), counts ~
  Poisson(n̄ (1 + δ_z)), clipped at 32767 (int16). The default n̄ is one particle per (Mpc/h)³ as in the
  CosmoFlow N-body runs (512³ particles in 512 Mpc/h), i.e. n̄ = (L/S)³ = 64 per 4 Mpc/h cell at the
  default 32³ cube of 128 Mpc/h: shot noise (P_shot = 1 (Mpc/h)³) is then far below the signal
  (P ≈ 10²–10⁴ (Mpc/h)³ on the grid's scales) and the labels are recoverable.

Layout: ``x`` (N, S, S, S, 4) int16 counts, channel axis last (like the public ``full`` array);
``unitPar`` (N, 4) float32 u; ``physPar`` (N, 4) float32 physical values.
"""

from __future__ import annotations

import functools

import numpy as np

PARAMETERS = ("Omega_m", "sigma_8", "n_s", "H_0")
FIDUCIAL = (0.3, 0.8, 0.96, 70.0)
REDSHIFTS = (0.0, 0.5, 1.5, 3.0)
#: the physical size of an MLPerf 128³ sub-cube (1 Mpc/h cells): 4 Mpc/h cells at the default 32³
BOX_SIZE = 128.0
#: particles per (Mpc/h)³, as in the CosmoFlow N-body runs (512³ particles in a 512 Mpc/h box)
PARTICLE_DENSITY = 1.0
SIZES = (32, 64, 128)
COUNT_MAX = np.iinfo(np.int16).max
_LOG_K = np.linspace(np.log(1e-5), np.log(1e3), 4096)


def physical(u: np.ndarray) -> np.ndarray:
    """Physical parameters fiducial · (1 + 0.1 u) of u-space values ``u`` (…, 4)."""
    return np.asarray(FIDUCIAL) * (1 + 0.1 * np.asarray(u, np.float64))


def bbks(k: np.ndarray, gamma: np.ndarray | float) -> np.ndarray:
    """BBKS transfer function T(q), q = k/Γ (k in h/Mpc); T → 1 as k → 0."""
    q = np.maximum(np.asarray(k, np.float64) / gamma, 1e-12)
    poly = 1 + 3.89 * q + (16.1 * q) ** 2 + (5.46 * q) ** 3 + (6.71 * q) ** 4
    return np.log1p(2.34 * q) / (2.34 * q) * poly**-0.25


def tophat(x: np.ndarray) -> np.ndarray:
    """Fourier transform of a spherical top hat, W(x) = 3(sin x − x cos x)/x³ (→ 1 − x²/10 at small x)."""
    x = np.asarray(x, np.float64)
    small = x < 1e-3
    xs = np.where(small, 1.0, x)
    return np.where(small, 1 - x**2 / 10, 3 * (np.sin(xs) - xs * np.cos(xs)) / xs**3)


def power_spectrum(k: np.ndarray, omega_m: np.ndarray, sigma_8: np.ndarray, n_s: np.ndarray,
                   h: np.ndarray | float = 0.7) -> np.ndarray:
    """Linear P(k) [(Mpc/h)³] at z = 0 for each cosmology, at wavenumbers ``k`` (1-D): shape (len(Ω_m), len(k)).

    P(k) = A k^{n_s} T²(k/Γ), Γ = Ω_m h, with A set so that σ(8 Mpc/h) = σ_8.
    """
    omega_m, sigma_8, n_s = (np.atleast_1d(np.asarray(a, np.float64))[:, None] for a in (omega_m, sigma_8, n_s))
    gamma = omega_m * np.broadcast_to(np.asarray(h, np.float64).reshape(-1), omega_m.shape[:1])[:, None]
    k_int = np.exp(_LOG_K)[None, :]
    shape = k_int**n_s * bbks(k_int, gamma) ** 2
    # σ² = (1/2π²) ∫ k³ P(k) W²(kR) d ln k
    integrand = k_int**3 * shape * tophat(k_int * 8.0) ** 2
    dlnk = _LOG_K[1] - _LOG_K[0]
    sigma2 = (integrand.sum(axis=1) - (integrand[:, 0] + integrand[:, -1]) / 2)[:, None] * dlnk / (2 * np.pi**2)
    amplitude = sigma_8**2 / sigma2
    k = np.asarray(k, np.float64)
    return amplitude * k[None, :] ** n_s * bbks(k[None, :], gamma) ** 2


def growth(z: np.ndarray | float | tuple[float, ...], omega_m: np.ndarray) -> np.ndarray:
    """Linear growth factor D(z)/D(0) of flat ΛCDM (Carroll, Press & Turner 1992): shape (len(Ω_m), len(z))."""
    z = np.atleast_1d(np.asarray(z, np.float64))[None, :]
    om = np.atleast_1d(np.asarray(omega_m, np.float64))[:, None]

    def g(zz: np.ndarray) -> np.ndarray:
        e2 = om * (1 + zz) ** 3 + 1 - om
        om_z, ol_z = om * (1 + zz) ** 3 / e2, (1 - om) / e2
        return 2.5 * om_z / (om_z ** (4 / 7) - ol_z + (1 + om_z / 2) * (1 + ol_z / 70))

    return g(z) / ((1 + z) * g(np.zeros_like(z)))


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer |n|² of the rfft half-grid (S, S, S/2+1), and the mode count per |n|² over the full grid."""
    n = np.fft.fftfreq(size, 1.0 / size).astype(np.int64)
    nz = np.arange(size // 2 + 1, dtype=np.int64)
    half = (n[:, None, None] ** 2 + n[None, :, None] ** 2 + nz[None, None, :] ** 2).astype(np.int32)
    full = n[:, None, None] ** 2 + n[None, :, None] ** 2 + n[None, None, :] ** 2
    counts = np.bincount(full.ravel(), minlength=int(half.max()) + 1)
    return half, counts


def mode_power(size: int, box_size: float, phys: np.ndarray) -> np.ndarray:
    """P(k) at the grid's wavenumbers k_m = (2π/L)√m, m = |n|² = 0…3(S/2)², per cosmology: (n, M).

    ``phys`` (n, 4) are physical (Ω_m, σ_8, n_s, H_0); the zero mode (m = 0) is set to 0.
    """
    _, counts = _grid(size)
    k = 2 * np.pi / box_size * np.sqrt(np.arange(counts.size))
    phys = np.atleast_2d(phys)
    p = power_spectrum(k, phys[:, 0], phys[:, 1], phys[:, 2], phys[:, 3] / 100)
    p[:, 0] = 0.0  # no zero mode: the cube's mean density is n̄
    return p


def field_variance(power: np.ndarray, size: int, box_size: float) -> np.ndarray:
    """σ_g² = Σ_{k≠0} P(k)/L³ over the full grid's modes, for ``power`` from :func:`mode_power`."""
    _, counts = _grid(size)
    return np.asarray((counts * power).sum(axis=-1) / box_size**3)


def gaussian_field(rng: np.random.Generator, power: np.ndarray, size: int, box_size: float) -> np.ndarray:
    """One Gaussian field g (S, S, S) with spectrum ``power`` (a row of :func:`mode_power`).

    g = IFFT[FFT(w) · √(P/Δ³)], w unit white noise: the estimator ⟨|Δ³ FFT(g)|²⟩/L³ gives back P(k).
    """
    half, _ = _grid(size)
    amp = np.sqrt(power / (box_size / size) ** 3)
    return np.fft.irfftn(np.fft.rfftn(rng.standard_normal((size, size, size))) * amp[half], s=(size,) * 3, axes=(0, 1, 2))


def generate_chunk(rng: np.random.Generator, n: int, size: int, box_size: float = BOX_SIZE,
                   mean_count: float | None = None) -> dict[str, np.ndarray]:
    """``n`` cubes of ``size``³ cells: ``x`` (n, S, S, S, 4) int16, ``unitPar`` and ``physPar`` (n, 4) float32.

    Args:
        rng: the chunk's generator (parameters, white noise and Poisson draws all come from it).
        n: number of cubes.
        size: cells per side S.
        box_size: side L of the cube [Mpc/h].
        mean_count: mean particles per cell n̄; ``None``: (L/S)³ · 1 particle per (Mpc/h)³.
    """
    nbar = default_mean_count(size, box_size) if mean_count is None else float(mean_count)
    u = np.zeros((n, 4))
    u[:, :3] = rng.uniform(-1.0, 1.0, (n, 3))
    phys = physical(u)
    power = mode_power(size, box_size, phys)
    sigma2 = field_variance(power, size, box_size)
    d = growth(REDSHIFTS, phys[:, 0])
    x = np.empty((n, size, size, size, len(REDSHIFTS)), np.int16)
    for i in range(n):
        g = gaussian_field(rng, power[i], size, box_size)
        for c in range(len(REDSHIFTS)):
            lam = nbar * np.exp(d[i, c] * g - d[i, c] ** 2 * sigma2[i] / 2)
            x[i, ..., c] = np.minimum(rng.poisson(np.minimum(lam, 1e9)), COUNT_MAX)
    return {"x": x, "unitPar": u.astype(np.float32), "physPar": phys.astype(np.float32)}


def default_mean_count(size: int, box_size: float = BOX_SIZE) -> float:
    """n̄ = (L/S)³ · 1 particle per (Mpc/h)³ (64 at 32³ cells of a 128 Mpc/h box, 1 at 128³)."""
    return PARTICLE_DENSITY * (box_size / size) ** 3
