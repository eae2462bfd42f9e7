"""Synthetic LHC whole-detector images in the public ATLAS RPV-SUSY layout (``all_events/...``).

Physics, following SCIENCE.md's recipe (vectorised with NumPy, one chunk of events at a time):

* **Background (QCD multijet)**: 2 + Poisson(1.5) partons; the leading one's pT from a falling power law
  above 350 GeV, the second back-to-back in φ (π ± N(0, 0.3)), extra softer radiation. Events are
  generated on a flatter spectrum (pT⁻³) and weighted to a steep one (pT⁻⁶), so QCD weights are large
  and vary strongly: the *weighted* false-positive rate is what matters.
* **Signal (RPV gluino pair, m_g̃ = 1400 GeV)**: two gluinos with pT ~ Rayleigh(250 GeV), each decaying
  isotropically (then boosted) into 3–5 partons sharing its mass energy: more jets, HT ≈ 2.5–3 TeV, more
  central and isotropic.
* **Detector**: each parton fragments into 1 + Poisson(4 + 2 ln(E/10 GeV)) constituents with
  Dirichlet(0.5) momentum fractions and an angular spread ∝ 1/√pT; ~2/3 charged (a track if
  pT > 1 GeV); EM fraction Beta(2, 5) for charged hadrons, 1 for photons; energy smearing
  σ/E = a/√E ⊕ 0.03 (a = 0.1 EM, 0.6 hadronic); binned in (η, φ) with η ∈ [−2.5, 2.5], φ ∈ [−π, π]
  (φ wraps); ~25 pile-up interactions of soft particles; Gaussian cell noise with zero suppression.
* **Physics selection** on fat jets (partons clustered with ΔR < 1.0): pT > 200 GeV, |η| < 2.0;
  ≥ 3 jets, leading pT > 440 GeV, |Δη₁₂| < 1.4; SR4J: ≥ 4 jets and Σ m_J > 800 GeV; SR5J: ≥ 5 jets and
  Σ m_J > 600 GeV; ``passSR = SR4J or SR5J``.

Layout: ``all_events/hist`` (N, S, S) total calorimeter energy [GeV], ``histEM``, ``histtrack`` (track
counts), ``y`` (1 signal), ``weight`` (σ·L/N, L = 36 000 pb⁻¹), ``normalized_weight`` (weights scaled so
that each class sums to N_class/2... i.e. balanced), ``passSR4J``, ``passSR5J``, ``passSR``, and ours:
``HT``, ``n_jets``, ``lead_jet_pt``, ``sum_jet_mass``, ``delta_eta12``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ETA_MAX = 2.5
LUMI_PB = 36_000.0
SIGMA_SIGNAL_PB = 0.0253
SIGMA_QCD_PB = 2.6e4  # multijet with leading pT > 350 GeV
GLUINO_MASS = 1400.0

#: Per-event scalar datasets we write besides the images.
HIGH_LEVEL = ("HT", "n_jets", "lead_jet_pt", "sum_jet_mass", "delta_eta12")


@dataclass(frozen=True)
class Partons:
    """Partons of a chunk of events, flat: event index, pT [GeV], η, φ, mass [GeV]."""

    event: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    mass: np.ndarray


def _wrap(phi: np.ndarray) -> np.ndarray:
    return (phi + np.pi) % (2 * np.pi) - np.pi


def qcd_partons(rng: np.random.Generator, n: int) -> tuple[Partons, np.ndarray]:
    """Background partons for ``n`` events and their relative generation weights (pT reweighting)."""
    n_extra = rng.poisson(1.5, n)
    u = rng.random(n)
    lead = 350.0 * (1 - u) ** (-1 / 2)  # density ∝ pT^-3 above 350 GeV
    rel_weight = (lead / 350.0) ** -2.0  # to a pT^-5 spectrum
    phi1 = rng.uniform(-np.pi, np.pi, n)
    eta1 = np.clip(rng.normal(0, 1.1, n), -ETA_MAX, ETA_MAX)
    second = lead * rng.uniform(0.55, 1.0, n)
    phi2 = _wrap(phi1 + np.pi + rng.normal(0, 0.3, n))
    eta2 = np.clip(eta1 + rng.normal(0, 1.0, n), -ETA_MAX, ETA_MAX)
    total_extra = int(n_extra.sum())
    ev_extra = np.repeat(np.arange(n), n_extra)
    extra_pt = 25.0 + rng.exponential(0.25 * lead[ev_extra] if total_extra else 1.0, total_extra)
    extra_eta = rng.uniform(-ETA_MAX, ETA_MAX, total_extra)
    extra_phi = rng.uniform(-np.pi, np.pi, total_extra)
    event = np.concatenate([np.arange(n), np.arange(n), ev_extra])
    pt = np.concatenate([lead, second, extra_pt])
    eta = np.concatenate([eta1, eta2, extra_eta])
    phi = np.concatenate([phi1, phi2, extra_phi])
    mass = pt * rng.uniform(0.04, 0.14, pt.size)
    order = np.argsort(event, kind="stable")
    return Partons(event[order], pt[order], eta[order], phi[order], mass[order]), rel_weight


def signal_partons(rng: np.random.Generator, n: int) -> Partons:
    """Signal partons: two gluinos per event, each decaying isotropically into 3–5 boosted partons."""
    events, pts, etas, phis = [], [], [], []
    phi_first = rng.uniform(-np.pi, np.pi, n)
    for g in range(2):
        g_pt = rng.rayleigh(250.0, n)
        # the pair is roughly back-to-back in the transverse plane
        g_phi = phi_first if g == 0 else _wrap(phi_first + np.pi + rng.normal(0, 0.6, n))
        g_eta = rng.normal(0, 0.8, n)
        k = rng.integers(3, 6, n)
        ev = np.repeat(np.arange(n), k)
        # energy sharing of the gluino's rest energy, then a boost along its direction
        share = rng.gamma(2.0, 1.0, ev.size)
        share /= np.bincount(ev, share, minlength=n)[ev]
        p_rest = GLUINO_MASS * share  # massless partons: |p| sums to the gluino mass
        cos_t = rng.uniform(-1, 1, ev.size)
        dphi = rng.uniform(-np.pi, np.pi, ev.size)
        # isotropic decay in the gluino frame, approximated by a spread around the gluino direction that
        # shrinks with its boost
        boost = np.sqrt(1 + (g_pt[ev] / GLUINO_MASS) ** 2)
        spread = 1.1 / boost
        eta = np.clip(g_eta[ev] + spread * np.arctanh(np.clip(cos_t, -0.96, 0.96)), -ETA_MAX, ETA_MAX)
        phi = _wrap(g_phi[ev] + spread * dphi)
        pt = p_rest * np.sqrt(1 - cos_t**2) * boost + share * g_pt[ev]
        events.append(ev)
        pts.append(pt)
        etas.append(eta)
        phis.append(phi)
    event = np.concatenate(events)
    pt = np.concatenate(pts)
    order = np.argsort(event, kind="stable")
    mass = pt * rng.uniform(0.04, 0.14, pt.size)
    return Partons(event[order], pt[order], np.concatenate(etas)[order], np.concatenate(phis)[order], mass[order])


def fat_jets(p: Partons, n: int) -> dict[str, np.ndarray]:
    """Cluster partons (ΔR < 1.0, pT-ordered seeds) into fat jets and compute the selection variables."""
    out = {name: np.zeros(n, np.float32) for name in HIGH_LEVEL}
    flags = {name: np.zeros(n, bool) for name in ("passSR4J", "passSR5J")}
    starts = np.searchsorted(p.event, np.arange(n + 1))
    for i in range(n):
        a, b = starts[i], starts[i + 1]
        pt, eta, phi, m = p.pt[a:b], p.eta[a:b], p.phi[a:b], p.mass[a:b]
        out["HT"][i] = pt.sum()
        order = np.argsort(-pt)
        used = np.zeros(b - a, bool)
        jets = []
        for s in order:
            if used[s]:
                continue
            dr = np.hypot(eta - eta[s], _wrap(phi - phi[s]))
            members = (~used) & (dr < 1.0)
            used |= members
            px = (pt[members] * np.cos(phi[members])).sum()
            py = (pt[members] * np.sin(phi[members])).sum()
            pz = (pt[members] * np.sinh(eta[members])).sum()
            e = np.sqrt((pt[members] * np.cosh(eta[members])) ** 2 + m[members] ** 2).sum()
            jpt = math.hypot(px, py)
            jeta = math.asinh(pz / jpt) if jpt > 0 else 0.0
            jets.append((jpt, jeta, math.sqrt(max(e * e - px * px - py * py - pz * pz, 0.0))))
        jets = [j for j in jets if j[0] > 200 and abs(j[1]) < 2.0]
        jets.sort(key=lambda j: -j[0])
        nj = len(jets)
        out["n_jets"][i] = nj
        if nj:
            out["lead_jet_pt"][i] = jets[0][0]
            out["sum_jet_mass"][i] = sum(j[2] for j in jets)
        if nj >= 2:
            out["delta_eta12"][i] = abs(jets[0][1] - jets[1][1])
        base = nj >= 3 and jets[0][0] > 440 and out["delta_eta12"][i] < 1.4
        flags["passSR4J"][i] = base and nj >= 4 and out["sum_jet_mass"][i] > 800
        flags["passSR5J"][i] = base and nj >= 5 and out["sum_jet_mass"][i] > 600
    return {**out, **flags}


def render(rng: np.random.Generator, p: Partons, n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fragment, smear and bin the partons of ``n`` events into (total, EM, track) images of size×size."""
    energy = p.pt * np.cosh(p.eta)
    n_const = 1 + rng.poisson(np.clip(4 + 2 * np.log(np.maximum(energy, 10.0) / 10.0), 0, None))
    idx = np.repeat(np.arange(p.pt.size), n_const)
    frac = rng.gamma(0.5, 1.0, idx.size) + 1e-9
    frac /= np.bincount(idx, frac, minlength=p.pt.size)[idx]
    c_pt = p.pt[idx] * frac
    spread = 0.6 / np.sqrt(np.maximum(p.pt[idx], 1.0))
    c_eta = p.eta[idx] + rng.normal(0, 1, idx.size) * spread
    c_phi = _wrap(p.phi[idx] + rng.normal(0, 1, idx.size) * spread)
    c_event = p.event[idx]
    # pile-up: ~25 interactions of soft particles, uniform in (η, φ)
    n_pu = rng.poisson(25 * 12, n)
    pu_event = np.repeat(np.arange(n), n_pu)
    pu_pt = rng.exponential(0.7, pu_event.size)
    pu_eta = rng.uniform(-ETA_MAX, ETA_MAX, pu_event.size)
    pu_phi = rng.uniform(-np.pi, np.pi, pu_event.size)
    c_pt = np.concatenate([c_pt, pu_pt])
    c_eta = np.concatenate([c_eta, pu_eta])
    c_phi = np.concatenate([c_phi, pu_phi])
    c_event = np.concatenate([c_event, pu_event])
    inside = np.abs(c_eta) < ETA_MAX
    c_pt, c_eta, c_phi, c_event = c_pt[inside], c_eta[inside], c_phi[inside], c_event[inside]
    charged = rng.random(c_pt.size) < 2 / 3
    e = c_pt * np.cosh(c_eta)
    em_frac = np.where(charged, rng.beta(2, 5, c_pt.size), 1.0)
    e_em = e * em_frac
    e_had = e - e_em
    e_em *= 1 + rng.normal(0, 1, e.size) * np.hypot(0.1 / np.sqrt(np.maximum(e_em, 1e-3)), 0.03)
    e_had *= 1 + rng.normal(0, 1, e.size) * np.hypot(0.6 / np.sqrt(np.maximum(e_had, 1e-3)), 0.03)
    ix = np.clip(((c_eta + ETA_MAX) / (2 * ETA_MAX) * size).astype(np.int64), 0, size - 1)
    iy = np.clip(((c_phi + np.pi) / (2 * np.pi) * size).astype(np.int64), 0, size - 1)
    flat = (c_event * size + ix) * size + iy
    cells = n * size * size
    em = np.bincount(flat, np.maximum(e_em, 0), minlength=cells).reshape(n, size, size).astype(np.float64)
    had = np.bincount(flat, np.maximum(e_had, 0), minlength=cells).reshape(n, size, size).astype(np.float64)
    tracks = np.bincount(flat, (charged & (c_pt > 1.0)).astype(np.float64), minlength=cells).reshape(n, size, size)
    # lateral shower spread into the neighbouring cells (φ wraps, η does not)
    def spread_cells(img: np.ndarray, share: float) -> np.ndarray:
        out = img * (1 - 4 * share)
        out += share * (np.roll(img, 1, 2) + np.roll(img, -1, 2))
        up = np.zeros_like(img)
        up[:, 1:] = img[:, :-1]
        down = np.zeros_like(img)
        down[:, :-1] = img[:, 1:]
        return out + share * (up + down)

    em = spread_cells(em, 0.05)
    had = spread_cells(had, 0.12)
    noise_sigma = 0.1
    em = em + rng.normal(0, noise_sigma, em.shape)
    had = had + rng.normal(0, noise_sigma, had.shape)
    em[em < 2 * noise_sigma] = 0
    had[had < 2 * noise_sigma] = 0
    return (em + had).astype(np.float32), em.astype(np.float32), tracks.astype(np.float32)


def generate_chunk(rng: np.random.Generator, labels: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """One chunk of events with the given labels (1 signal, 0 background): images, weights, variables."""
    n = labels.size
    sig = np.flatnonzero(labels == 1)
    bkg = np.flatnonzero(labels == 0)
    qcd, rel_weight = qcd_partons(rng, bkg.size)
    susy = signal_partons(rng, sig.size)
    partons = Partons(
        event=np.concatenate([bkg[qcd.event], sig[susy.event]]),
        pt=np.concatenate([qcd.pt, susy.pt]), eta=np.concatenate([qcd.eta, susy.eta]),
        phi=np.concatenate([qcd.phi, susy.phi]), mass=np.concatenate([qcd.mass, susy.mass]),
    )
    order = np.argsort(partons.event, kind="stable")
    partons = Partons(*(getattr(partons, f)[order] for f in ("event", "pt", "eta", "phi", "mass")))
    hist, hist_em, hist_track = render(rng, partons, n, size)
    variables = fat_jets(partons, n)
    raw_weight = np.ones(n)
    raw_weight[bkg] = rel_weight
    return {
        "hist": hist, "histEM": hist_em, "histtrack": hist_track, "y": labels.astype(np.float32),
        "raw_weight": raw_weight, **variables,
    }
