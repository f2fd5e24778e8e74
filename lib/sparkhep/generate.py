"""SYNTHETIC NanoAOD-like events: a toy all-hadronic tt̄ signal and a toy QCD multijet background.

Everything this module makes is SYNTHETIC: a fast, seeded, vectorised numpy toy, not the output of
a real event generator or detector simulation. It exists so that the whole project runs end to
end on a machine without real data, and so that scale tests and benchmarks can have any number of
events. File names (``synthetic_<kind>_<i>.root``), the ``Events`` tree title and the log
messages all say so.

The files mirror the layout of the real Pythia NanoAOD sample (``../shared/data/pythia``): tree
``Events`` with ``run``, ``luminosityBlock`` (uint32), ``event`` (uint64), ``genWeight``,
``MET_pt``, ``MET_phi`` (float32), ``nJet`` + ``Jet_pt``, ``Jet_eta``, ``Jet_phi``,
``Jet_mass``, ``Jet_btagDeepB`` (float32[], pT-ordered), ``Jet_hadronFlavour`` (int32[]) and
``nMuon`` + ``Muon_pt``, ``Muon_eta``, ``Muon_phi`` (float32[]), ``Muon_charge`` (int32[]).

The toy physics:

- ``"signal"``: two top quarks (Breit-Wigner mass around 172.5 GeV) with a falling pT spectrum
  (mean ≈ 120 GeV) and a rapidity spread, each decaying t → bW, W → qq̄' with two-body decay
  kinematics in the rest frames, boosted to the lab. Partons closer than ΔR = 0.4 merge into one
  jet (boosted W and top jets).
- ``"background"``: a QCD 2→2 hard scatter with p̂T > 150 GeV, drawn from a steeply falling
  spectrum with a p̂T⁴ bias; ``genWeight = (150 GeV / p̂T)⁴`` undoes the bias, as in the real
  QCD sample.
- Both: hard partons may split into two resolved jets (final-state radiation), Poisson-many soft
  radiation jets are added, jets get a mass from a toy shower, semileptonic heavy-flavour decays
  give muons and neutrinos, jet pT and mass are smeared by a 10 % Gaussian, MET is the neutrino
  sum plus 15 GeV Gaussian noise per component, and ``Jet_btagDeepB`` is drawn per hadron
  flavour so that ``> 0.5`` keeps 73 % of b, 12 % of c and 1.6 % of light jets.
- Selection as in the real sample: jets with pT > 25 GeV and |η| < 2.5, at least four per event.

``event`` is ``(2·seed + k)·10¹² + index + 1`` with k = 0 for signal and 1 for background, so event
numbers are unique across kinds, seeds and the files of one sample; ``run`` is 1 and
``luminosityBlock`` is ``index // 1000 + 1``.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

if TYPE_CHECKING:
    import awkward as ak

logger = logging.getLogger(__name__)

Kind = Literal["signal", "background"]
KINDS: tuple[str, ...] = get_args(Kind)
_KIND_CODE = {"signal": 0, "background": 1}

TREE_NAME = "Events"
SEED_LIMIT = 2**22
"""Seeds are integers in ``[0, SEED_LIMIT)``, so that every ``event`` number fits in uint64."""
EVENTS_PER_SEED_BLOCK = 10**12
"""Events one (seed, kind) can number: ``first_event + n_events`` may not exceed it."""

# Selection, as in the real Pythia NanoAOD sample.
JET_PT_MIN = 25.0
JET_ETA_MAX = 2.5
MIN_JETS = 4
_MUON_PT_MIN = 5.0
_MUON_ETA_MAX = 2.4
_JET_RADIUS = 0.4

# Masses and widths (GeV).
_TOP_MASS, _TOP_WIDTH = 172.5, 1.42
_W_MASS, _W_WIDTH = 80.38, 2.09
_B_MASS, _C_MASS = 4.8, 1.5

# Signal: top pT ~ Gamma(shape, scale), mean 120 GeV (jets then lose ~15 % of the parton pT to
# out-of-cone radiation, neutrinos and splittings); rapidities = boost ± half-gap.
_TOP_PT_SHAPE, _TOP_PT_SCALE = 2.0, 60.0
_TTBAR_RECOIL = 20.0  # GeV per transverse component (initial-state radiation)
_TTBAR_Y_BOOST, _TTBAR_Y_HALF_GAP = 0.9, 0.7
_W_TO_CS = 0.5  # W → cs̄ among hadronic W decays

# Background: biased p̂T density ∝ p̂T^-(1 + alpha) · ((1 - x₁)(1 - x₂))^power, the second factor
# a toy of the fall-off of the parton densities.
_SQRT_S = 13000.0
_PTHAT_MIN = 150.0
_PTHAT_BIAS_POWER = 4.0
_PTHAT_ALPHA = 0.45
_PDF_POWER = 2.0
_QCD_Y_BOOST, _QCD_Y_STAR = 0.9, 0.9
_QCD_PAIR_BB, _QCD_PAIR_CC = 0.055, 0.05  # both hard partons heavy (gg → bb̄, cc̄)
_QCD_SINGLE_B, _QCD_SINGLE_C = 0.06, 0.08  # one heavy parton (flavour excitation)

# Final-state splitting of a hard parton into two resolved jets.
_SPLIT_QUARK, _SPLIT_GLUON = 0.2, 0.5
_SPLIT_Z_MIN, _SPLIT_Z_MAX = 0.1, 0.5
_SPLIT_DR_EXTRA = 0.35  # ΔR = 0.4 + Exponential(this), at most _SPLIT_DR_MAX
_SPLIT_DR_MAX = 1.5
_SPLIT_TO_BB, _SPLIT_TO_CC = 0.02, 0.04  # g → bb̄, cc̄ among gluon splittings

# Soft radiation jets: count ~ Poisson, pT ~ Pareto above _RAD_PT_MIN.
_RAD_SLOTS = 8
_RAD_PT_MIN, _RAD_PT_INDEX = 20.0, 1.5
_RAD_ETA_SPREAD = 1.8
_RAD_MEAN_SIGNAL = 1.5
_RAD_MEAN_QCD, _RAD_MEAN_QCD_SLOPE = 1.2, 1.0  # + slope · ln(p̂T / 150 GeV)
_RAD_B, _RAD_C = 0.015, 0.04

# Jet mass from the shower, added in quadrature to the parton mass:
# m = pT · ratio · (pT / pivot)^-slope · LogNormal(0, spread).
_JET_MASS_RATIO, _JET_MASS_PIVOT, _JET_MASS_SLOPE, _JET_MASS_SPREAD = 0.15, 50.0, 0.2, 0.4
_OUT_OF_CONE, _OUT_OF_CONE_MAX = 0.06, 0.5  # mean and largest fractional pT loss
_SMEAR = 0.10  # relative Gaussian smearing of jet pT and mass

# Semileptonic decays inside jets, per hadron flavour (light, c, b).
_SEMILEPTONIC = {0: 0.008, 4: 0.2, 5: 0.4}  # b: direct plus cascade b → c decays
_MUON_SHARE = 0.5  # muon rather than electron
_NEUTRINO_Z_MAX = 0.4
_MUON_Z_MIN, _MUON_Z_MAX = 0.02, 0.3
_MUON_ANGLE_SPREAD = 0.05
_MET_NOISE = 15.0  # GeV per component

# Jet_btagDeepB ~ Beta(a, b) per hadron flavour, so that P(> working point w) is exact:
# Beta(1, b) has P(> w) = (1 - w)**b (falling, light and c) and Beta(a, 1) has P(> w) = 1 - w**a
# (rising, b).
BTAG_WORKING_POINT = 0.5
BTAG_EFFICIENCY = {5: 0.73, 4: 0.12, 0: 0.016}
_BTAG_BETA = {
    0: (1.0, math.log(BTAG_EFFICIENCY[0]) / math.log(1.0 - BTAG_WORKING_POINT)),
    4: (1.0, math.log(BTAG_EFFICIENCY[4]) / math.log(1.0 - BTAG_WORKING_POINT)),
    5: (math.log(1.0 - BTAG_EFFICIENCY[5]) / math.log(BTAG_WORKING_POINT), 1.0),
}

_CHUNK_MIN, _CHUNK_MAX = 1_000, 200_000
_EXPECTED_EFFICIENCY = {"signal": 0.88, "background": 0.5}  # sizes the chunks
_WRITE_BLOCK = 250_000

JET_FIELDS = ("pt", "eta", "phi", "mass", "btagDeepB", "hadronFlavour")
MUON_FIELDS = ("pt", "eta", "phi", "charge")
_INT_FIELDS = frozenset({"hadronFlavour", "charge"})


@dataclass(frozen=True)
class _Partons:
    """Hard partons of a chunk, shape ``(events, partons)``; invalid slots have ``valid`` False."""

    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    mass: np.ndarray
    flavour: np.ndarray
    valid: np.ndarray
    split_probability: np.ndarray


@dataclass(frozen=True)
class _Chunk:
    """Selected events of one chunk, collections as counts + flat values (NanoAOD's layout).

    ``scalars``: ``genWeight``, ``MET_pt``, ``MET_phi``; ``counts``: objects per event by
    collection (``Jet``, ``Muon``); ``values``: flat values by branch name (``Jet_pt``, ...).
    """

    n_generated: int
    scalars: dict[str, np.ndarray]
    counts: dict[str, np.ndarray]
    values: dict[str, np.ndarray]


def generate_events(
    n_events: int, *, kind: Kind, seed: int, first_event: int = 0
) -> dict[str, np.ndarray | ak.Array]:
    """Generate ``n_events`` SYNTHETIC NanoAOD-like events that pass the selection.

    Events are generated in chunks until enough pass the selection (≥ 4 jets with pT > 25 GeV,
    |η| < 2.5); the surplus of the last chunk is dropped. The random stream is keyed by
    ``(seed, kind, first_event)``: the same arguments give identical events, and blocks with a
    different ``first_event`` are independent of each other.

    Args:
        n_events: how many selected events to return (≥ 0).
        kind: ``"signal"`` (all-hadronic tt̄-like) or ``"background"`` (QCD-multijet-like).
        seed: random seed, an integer in ``[0, SEED_LIMIT)``; it also sets the ``event`` numbers.
        first_event: index of the first event within the (seed, kind) sample; ``event`` numbers
            and luminosity blocks follow from it.

    Returns:
        Branch name → values, named as in NanoAOD: ``run``, ``luminosityBlock``, ``event``,
        ``genWeight``, ``MET_pt``, ``MET_phi``, ``nJet``, ``nMuon`` as numpy arrays and
        ``Jet_*``, ``Muon_*`` as jagged awkward arrays (float32, or int32 for
        ``Jet_hadronFlavour`` and ``Muon_charge``), jets ordered by decreasing pT.
    """
    import awkward as ak

    _check_kind(kind)
    _check_int("n_events", n_events, minimum=0)
    _check_int("seed", seed, minimum=0, limit=SEED_LIMIT)
    _check_int("first_event", first_event, minimum=0)
    if first_event + n_events > EVENTS_PER_SEED_BLOCK:
        raise ValueError(
            f"first_event + n_events must be at most {EVENTS_PER_SEED_BLOCK} so that event "
            f"numbers stay unique; got first_event={first_event!r}, n_events={n_events!r}"
        )

    start = time.perf_counter()
    rng = np.random.default_rng(np.random.SeedSequence([seed, _KIND_CODE[kind], first_event]))
    chunks: list[_Chunk] = []
    n_selected = n_generated = 0
    while n_selected < n_events:
        missing = n_events - n_selected
        size = math.ceil(1.1 * missing / _EXPECTED_EFFICIENCY[kind]) + 64
        chunk = _generate_chunk(rng, min(max(size, _CHUNK_MIN), _CHUNK_MAX), kind=kind)
        chunks.append(chunk)
        n_selected += len(chunk.scalars["genWeight"])
        n_generated += chunk.n_generated

    index = np.arange(first_event, first_event + n_events, dtype=np.uint64)
    base = np.uint64((2 * seed + _KIND_CODE[kind]) * EVENTS_PER_SEED_BLOCK + 1)
    events: dict[str, np.ndarray | ak.Array] = {
        "run": np.ones(n_events, dtype=np.uint32),
        "luminosityBlock": (index // np.uint64(1000) + np.uint64(1)).astype(np.uint32),
        "event": index + base,
    }
    for name in ("genWeight", "MET_pt", "MET_phi"):
        events[name] = _concat([c.scalars[name] for c in chunks], n_events, np.float32)
    for collection, fields in (("Jet", JET_FIELDS), ("Muon", MUON_FIELDS)):
        counts = _concat([c.counts[collection] for c in chunks], n_events, np.int32)
        n_values = int(counts.sum())
        events[f"n{collection}"] = counts
        for field in fields:
            branch = f"{collection}_{field}"
            dtype = np.int32 if field in _INT_FIELDS else np.float32
            values = _concat([c.values[branch] for c in chunks], n_values, dtype)
            events[branch] = ak.unflatten(values, counts)

    if n_generated:
        logger.info(
            "Generated %d SYNTHETIC %s events (seed %d, first event %d): %d of %d pass the "
            "selection (efficiency %.1f %%) in %.2f s",
            n_events,
            kind,
            seed,
            first_event,
            n_selected,
            n_generated,
            100.0 * n_selected / n_generated,
            time.perf_counter() - start,
        )
    return events


def write_sample(
    out_dir: Path,
    *,
    kind: Kind,
    n_events: int,
    n_files: int = 1,
    seed: int,
    prefix: str | None = None,
) -> list[Path]:
    """Write a SYNTHETIC sample as NanoAOD-like ROOT files with a TTree ``Events``.

    The events are split evenly across the files; file ``i`` (from 1) holds
    ``generate_events(..., first_event=offset)`` blocks of at most 250 000 events, so event
    numbers are unique across the files. Each file is written in a temporary directory inside
    ``out_dir`` and renamed into place when complete; on failure, no file of this call is left.

    Args:
        out_dir: directory for the files (created if missing).
        kind: ``"signal"`` or ``"background"``.
        n_events: total number of selected events over all files (≥ n_files).
        n_files: number of files (≥ 1).
        seed: random seed, an integer in ``[0, SEED_LIMIT)``.
        prefix: file names are ``<prefix>_<i>.root``; default ``synthetic_<kind>``.

    Returns:
        The paths of the written files, in order.
    """
    import uproot

    _check_kind(kind)
    _check_int("n_files", n_files, minimum=1)
    _check_int("n_events", n_events, minimum=1)
    if n_events < n_files:
        raise ValueError(
            f"n_events must be at least n_files so that no file is empty; got "
            f"n_events={n_events!r}, n_files={n_files!r}"
        )
    _check_int("seed", seed, minimum=0, limit=SEED_LIMIT)
    prefix = f"synthetic_{kind}" if prefix is None else prefix
    if not prefix or os.sep in prefix or (os.altsep and os.altsep in prefix):
        raise ValueError(f"prefix must be a non-empty file name without separators; got {prefix!r}")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = [n_events // n_files + (i < n_events % n_files) for i in range(n_files)]
    title = f"SYNTHETIC sparkhep {kind} events (toy generator, not real data), seed {seed}"
    written: list[Path] = []
    staging = Path(tempfile.mkdtemp(prefix=".sparkhep-generate-", dir=out_dir))
    try:
        offset = 0
        for number, size in enumerate(sizes, start=1):
            path = out_dir / f"{prefix}_{number}.root"
            staged = staging / path.name
            start = time.perf_counter()
            with uproot.recreate(staged) as file:
                tree = None
                for block_start in range(0, size, _WRITE_BLOCK):
                    block = min(_WRITE_BLOCK, size - block_start)
                    events = generate_events(
                        block, kind=kind, seed=seed, first_event=offset + block_start
                    )
                    data = _tree_data(events)
                    if tree is None:
                        tree = file.mktree(TREE_NAME, data, title=title)
                    else:
                        tree.extend(data)
            os.replace(staged, path)
            written.append(path)
            offset += size
            logger.info(
                "Wrote SYNTHETIC %s sample file %s (%d events) in %.2f s",
                kind,
                path,
                size,
                time.perf_counter() - start,
            )
    except BaseException:
        for complete in written:
            complete.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written


def write_demo_samples(out_dir: Path, *, n_events: int, seed: int = 1) -> dict[str, list[Path]]:
    """Write a SYNTHETIC signal and a SYNTHETIC background sample, two files each.

    Args:
        out_dir: directory for the files (created if missing).
        n_events: selected events per kind (≥ 2), split over its two files.
        seed: random seed shared by both kinds (their streams and event numbers still differ).

    Returns:
        ``{"signal": [paths], "background": [paths]}``.
    """
    return {
        kind: write_sample(out_dir, kind=kind, n_events=n_events, n_files=2, seed=seed)
        for kind in KINDS
    }


def _tree_data(events: dict[str, np.ndarray | ak.Array]) -> dict[str, np.ndarray | ak.Array]:
    """Branches for ``mktree``: records ``Jet``/``Muon`` become ``nJet`` + ``Jet_pt`` etc."""
    import awkward as ak

    data: dict[str, np.ndarray | ak.Array] = {
        name: events[name]
        for name in ("run", "luminosityBlock", "event", "genWeight", "MET_pt", "MET_phi")
    }
    for name, fields in (("Jet", JET_FIELDS), ("Muon", MUON_FIELDS)):
        data[name] = ak.zip({field: events[f"{name}_{field}"] for field in fields})
    return data


def _generate_chunk(rng: np.random.Generator, size: int, *, kind: Kind) -> _Chunk:
    """Generate ``size`` events of ``kind`` and return those that pass the selection."""
    if kind == "signal":
        partons = _signal_partons(rng, size)
        weight = np.ones(size)
        radiation_mean = np.full(size, _RAD_MEAN_SIGNAL)
        radiation_pt_max = np.full(size, _TOP_MASS)
    else:
        partons, pthat = _background_partons(rng, size)
        weight = (_PTHAT_MIN / pthat) ** _PTHAT_BIAS_POWER
        radiation_mean = _RAD_MEAN_QCD + _RAD_MEAN_QCD_SLOPE * np.log(pthat / _PTHAT_MIN)
        radiation_pt_max = pthat
    return _detector_events(rng, partons, weight, radiation_mean, radiation_pt_max)


def _signal_partons(rng: np.random.Generator, n: int) -> _Partons:
    """t t̄ → (b q q̄')(b̄ q q̄'): six partons per event, merged where closer than ΔR = 0.4."""
    top_pt = rng.gamma(_TOP_PT_SHAPE, _TOP_PT_SCALE, n)
    top_phi = rng.uniform(-np.pi, np.pi, n)
    px1, py1 = top_pt * np.cos(top_phi), top_pt * np.sin(top_phi)
    px2 = -px1 + rng.normal(0.0, _TTBAR_RECOIL, n)
    py2 = -py1 + rng.normal(0.0, _TTBAR_RECOIL, n)
    y_boost = rng.normal(0.0, _TTBAR_Y_BOOST, n)
    y_half_gap = rng.normal(0.0, _TTBAR_Y_HALF_GAP, n)

    momenta, flavours = [], []
    for px, py, y in ((px1, py1, y_boost + y_half_gap), (px2, py2, y_boost - y_half_gap)):
        top_mass = _breit_wigner(rng, n, _TOP_MASS, _TOP_WIDTH, 5 * _TOP_WIDTH)
        w_mass = _breit_wigner(rng, n, _W_MASS, _W_WIDTH, 5 * _W_WIDTH)
        mt = np.sqrt(top_mass**2 + px**2 + py**2)
        top = np.stack([mt * np.cosh(y), px, py, mt * np.sinh(y)], axis=-1)
        w_rest, b_rest = _two_body_decay(rng, top_mass, w_mass, np.full(n, _B_MASS))
        w, b = _boost(w_rest, top, top_mass), _boost(b_rest, top, top_mass)
        charm = rng.random(n) < _W_TO_CS
        q_mass = np.where(charm, _C_MASS, 0.0)
        q_rest, qbar_rest = _two_body_decay(rng, w_mass, q_mass, np.zeros(n))
        momenta += [b, _boost(q_rest, w, w_mass), _boost(qbar_rest, w, w_mass)]
        flavours += [np.full(n, 5), np.where(charm, 4, 0), np.zeros(n, dtype=np.int64)]

    p4, flavour, valid, merged = _merge_close(np.stack(momenta, axis=1), np.stack(flavours, 1))
    pt, eta, phi, mass = _to_pt_eta_phi_mass(p4)
    split_probability = np.where(merged, 0.0, _SPLIT_QUARK)
    return _Partons(pt, eta, phi, mass, flavour, valid, split_probability)


def _background_partons(rng: np.random.Generator, n: int) -> tuple[_Partons, np.ndarray]:
    """QCD 2→2 with a p̂T⁴-biased p̂T; returns the two partons and p̂T."""
    pthat, y_star, y_boost = _sample_hard_scatter(rng, n)
    phi1 = rng.uniform(-np.pi, np.pi, n)
    phi = np.stack([phi1, _wrap_phi(phi1 + np.pi)], axis=1)
    eta = np.stack([y_boost + y_star, y_boost - y_star], axis=1)
    pt = np.stack([pthat, pthat], axis=1)

    pair = rng.random(n)
    flavour = _draw_flavour(rng.random((n, 2)), b=_QCD_SINGLE_B, c=_QCD_SINGLE_C)
    flavour[pair < _QCD_PAIR_BB + _QCD_PAIR_CC] = 4
    flavour[pair < _QCD_PAIR_BB] = 5
    split_probability = np.where(flavour == 0, _SPLIT_GLUON, _SPLIT_QUARK)
    valid = np.ones((n, 2), dtype=bool)
    return _Partons(pt, eta, phi, np.zeros((n, 2)), flavour, valid, split_probability), pthat


def _sample_hard_scatter(
    rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accept-reject draw of (p̂T, y*, y_boost) within the kinematic limits x₁, x₂ < 1."""
    kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    n_kept = 0
    while n_kept < n:
        size = math.ceil(1.5 * (n - n_kept)) + 16
        pthat = _PTHAT_MIN * (1.0 - rng.random(size)) ** (-1.0 / _PTHAT_ALPHA)
        y_star = rng.normal(0.0, _QCD_Y_STAR, size)
        y_boost = rng.normal(0.0, _QCD_Y_BOOST, size)
        x_common = 2.0 * pthat / _SQRT_S * np.cosh(y_star)
        x1 = np.minimum(x_common * np.exp(y_boost), 1.0)
        x2 = np.minimum(x_common * np.exp(-y_boost), 1.0)
        accept = rng.random(size) < ((1.0 - x1) * (1.0 - x2)) ** _PDF_POWER
        kept.append((pthat[accept], y_star[accept], y_boost[accept]))
        n_kept += int(accept.sum())
    pthat, y_star, y_boost = (np.concatenate(parts)[:n] for parts in zip(*kept, strict=True))
    return pthat, y_star, y_boost


def _detector_events(
    rng: np.random.Generator,
    partons: _Partons,
    weight: np.ndarray,
    radiation_mean: np.ndarray,
    radiation_pt_max: np.ndarray,
) -> _Chunk:
    """Shower, detector emulation and selection: from hard partons to selected NanoAOD events."""
    n = len(weight)
    pt, eta, phi, mass, flavour, valid = _split_partons(rng, partons)
    pt, eta, phi, mass, flavour, valid = _add_radiation(
        rng, (pt, eta, phi, mass, flavour, valid), radiation_mean, radiation_pt_max
    )

    # Radiation out of the jet cone: a loss of pT with an exponential tail.
    pt = pt * (1.0 - np.minimum(rng.exponential(_OUT_OF_CONE, pt.shape), _OUT_OF_CONE_MAX))
    log_ratio = -_JET_MASS_SLOPE * np.log(np.maximum(pt, 1.0) / _JET_MASS_PIVOT)
    shower = pt * _JET_MASS_RATIO * np.exp(log_ratio + rng.normal(0.0, _JET_MASS_SPREAD, pt.shape))
    mass = np.sqrt(mass**2 + shower**2)

    # Semileptonic decays: a neutrino leaves the jet (→ MET), a muon may be reconstructed.
    probability = np.select(
        [flavour == 5, flavour == 4], [_SEMILEPTONIC[5], _SEMILEPTONIC[4]], _SEMILEPTONIC[0]
    )
    event, slot = np.nonzero(valid & (rng.random(pt.shape) < probability))
    n_decays = len(event)
    parent_phi = phi[event, slot]
    nu_pt = rng.uniform(0.0, _NEUTRINO_Z_MAX, n_decays) * pt[event, slot]
    pt[event, slot] -= nu_pt
    met_x = np.bincount(event, nu_pt * np.cos(parent_phi), n) + rng.normal(0.0, _MET_NOISE, n)
    met_y = np.bincount(event, nu_pt * np.sin(parent_phi), n) + rng.normal(0.0, _MET_NOISE, n)
    muons = {
        "pt": rng.uniform(_MUON_Z_MIN, _MUON_Z_MAX, n_decays) * pt[event, slot],
        "eta": eta[event, slot] + rng.normal(0.0, _MUON_ANGLE_SPREAD, n_decays),
        "phi": _wrap_phi(parent_phi + rng.normal(0.0, _MUON_ANGLE_SPREAD, n_decays)),
        "charge": np.where(rng.random(n_decays) < 0.5, -1, 1),
    }
    has_muon = (
        (rng.random(n_decays) < _MUON_SHARE)
        & (muons["pt"] > _MUON_PT_MIN)
        & (np.abs(muons["eta"]) < _MUON_ETA_MAX)
    )

    pt *= np.maximum(rng.normal(1.0, _SMEAR, pt.shape), 0.0)
    mass *= np.maximum(rng.normal(1.0, _SMEAR, pt.shape), 0.0)
    good = valid & (pt > JET_PT_MIN) & (np.abs(eta) < JET_ETA_MAX)
    keep = good.sum(axis=1) >= MIN_JETS

    jet_fields = {"pt": pt, "eta": eta, "phi": phi, "mass": mass, "hadronFlavour": flavour}
    jet_counts, jets = _sorted_jets(good, keep, jet_fields)
    jets["btagDeepB"] = _btag(rng, jets["hadronFlavour"])
    muon_counts, muons = _sorted_muons(event, has_muon, muons, keep)
    return _Chunk(
        n_generated=n,
        scalars={
            "genWeight": weight[keep],
            "MET_pt": np.hypot(met_x, met_y)[keep],
            "MET_phi": np.arctan2(met_y, met_x)[keep],
        },
        counts={"Jet": jet_counts, "Muon": muon_counts},
        values={
            **{f"Jet_{field}": values for field, values in jets.items()},
            **{f"Muon_{field}": values for field, values in muons.items()},
        },
    )


def _split_partons(rng: np.random.Generator, partons: _Partons) -> tuple[np.ndarray, ...]:
    """Final-state splitting: each parton may become a harder and a softer resolved jet.

    The softer jet takes a fraction z of the parent's pT, drawn ∝ 1/z (soft emissions are
    likelier), at ΔR > 0.4; the pair keeps the parent's pT and pT-weighted direction.
    Returns ``(pt, eta, phi, mass, flavour, valid)`` with two slots per parton.
    """
    shape = partons.pt.shape
    split = partons.valid & (rng.random(shape) < partons.split_probability)
    z_log_range = math.log(_SPLIT_Z_MAX / _SPLIT_Z_MIN)
    z = np.where(split, _SPLIT_Z_MIN * np.exp(z_log_range * rng.random(shape)), 0.0)
    delta_r = np.minimum(_JET_RADIUS + rng.exponential(_SPLIT_DR_EXTRA, shape), _SPLIT_DR_MAX)
    angle = rng.uniform(-np.pi, np.pi, shape)
    d_eta, d_phi = delta_r * np.cos(angle), delta_r * np.sin(angle)

    heavy = _draw_flavour(rng.random(shape), b=_SPLIT_TO_BB, c=_SPLIT_TO_CC)
    heavy = np.where(split & (partons.flavour == 0), heavy, 0)
    hard_flavour = np.maximum(partons.flavour, heavy)

    def interleave(hard: np.ndarray, soft: np.ndarray) -> np.ndarray:
        return np.stack([hard, soft], axis=2).reshape(shape[0], 2 * shape[1])

    return (
        interleave((1.0 - z) * partons.pt, z * partons.pt),
        interleave(partons.eta - z * d_eta, partons.eta + (1.0 - z) * d_eta),
        interleave(_wrap_phi(partons.phi - z * d_phi), _wrap_phi(partons.phi + (1.0 - z) * d_phi)),
        interleave(partons.mass, np.zeros(shape)),
        interleave(hard_flavour, heavy),
        interleave(partons.valid, split),
    )


def _add_radiation(
    rng: np.random.Generator,
    jets: tuple[np.ndarray, ...],
    mean: np.ndarray,
    pt_max: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """Append Poisson-many soft radiation jets; those within ΔR < 0.4 of a hard jet are absorbed."""
    n, n_hard = jets[0].shape
    out = [np.zeros((n, n_hard + _RAD_SLOTS), dtype=array.dtype) for array in jets]
    for whole, hard in zip(out, jets, strict=True):
        whole[:, :n_hard] = hard
    pt, eta, phi, _, flavour, valid = out

    count = np.minimum(rng.poisson(mean), _RAD_SLOTS)
    event = np.repeat(np.arange(n), count)
    slot = n_hard + np.arange(len(event)) - np.repeat(np.cumsum(count) - count, count)
    rad_eta = rng.normal(0.0, _RAD_ETA_SPREAD, len(event))
    rad_phi = rng.uniform(-np.pi, np.pi, len(event))
    pt[event, slot] = np.minimum(
        _RAD_PT_MIN * (1.0 - rng.random(len(event))) ** (-1.0 / _RAD_PT_INDEX), pt_max[event]
    )
    eta[event, slot] = rad_eta
    phi[event, slot] = rad_phi
    flavour[event, slot] = _draw_flavour(rng.random(len(event)), b=_RAD_B, c=_RAD_C)
    distance = _delta_r2(
        rad_eta[:, None], rad_phi[:, None], eta[event, :n_hard], phi[event, :n_hard]
    )
    valid[event, slot] = ~((distance < _JET_RADIUS**2) & valid[event, :n_hard]).any(axis=1)
    return tuple(out)


def _sorted_jets(
    good: np.ndarray, keep: np.ndarray, fields: dict[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Counts and flat values of the selected jets of the kept events, by decreasing pT.

    Args:
        good: which slots are selected jets, shape ``(events, slots)``.
        keep: which events pass the selection.
        fields: jet quantities of the same shape as ``good``, including ``"pt"``.

    Returns:
        ``(jets per kept event, {field: flat values})``.
    """
    n, slots = good.shape
    good = good & keep[:, None]
    order = np.argsort(np.where(good, -fields["pt"], np.inf), axis=1)
    flat = (order + slots * np.arange(n)[:, None])[np.take_along_axis(good, order, axis=1)]
    return good.sum(axis=1)[keep], {name: array.ravel()[flat] for name, array in fields.items()}


def _sorted_muons(
    event: np.ndarray, accepted: np.ndarray, fields: dict[str, np.ndarray], keep: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Counts and flat values of the accepted muons of the kept events, by decreasing pT.

    Args:
        event: chunk event index of each muon candidate.
        accepted: which candidates are reconstructed muons.
        fields: muon quantities per candidate, including ``"pt"``.
        keep: which events of the chunk pass the selection.

    Returns:
        ``(muons per kept event, {field: flat values})``.
    """
    chosen = accepted & keep[event]
    kept_index = (np.cumsum(keep) - 1)[event[chosen]]
    order = np.lexsort((-fields["pt"][chosen], kept_index))
    counts = np.bincount(kept_index, minlength=int(keep.sum()))
    return counts, {name: array[chosen][order] for name, array in fields.items()}


def _draw_flavour(uniform: np.ndarray, *, b: float, c: float) -> np.ndarray:
    """Hadron flavour codes from uniform draws: 5 with probability ``b``, 4 with ``c``, else 0."""
    return np.where(uniform < b, 5, np.where(uniform < b + c, 4, 0))


def _btag(rng: np.random.Generator, flavour: np.ndarray) -> np.ndarray:
    """``Jet_btagDeepB`` drawn from the Beta distribution of each jet's hadron flavour."""
    btag = np.empty(flavour.shape)
    for code, (a, b) in _BTAG_BETA.items():
        selected = flavour == code
        btag[selected] = rng.beta(a, b, int(selected.sum()))
    return btag


def _merge_close(
    p4: np.ndarray, flavour: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge partons closer than ΔR = 0.4, the closest pair first, until none are.

    The loop is over merge rounds (at most partons - 1), each vectorised over the events that
    merged in the round before (the others cannot change).

    Returns:
        ``(p4, flavour, valid, merged)``: merged slots hold the four-momentum sum and the heavier
        flavour; absorbed slots are not ``valid``.
    """
    n, k = flavour.shape
    p4, flavour = p4.copy(), flavour.copy()
    valid = np.ones((n, k), dtype=bool)
    merged = np.zeros((n, k), dtype=bool)
    _, eta, phi, _ = _to_pt_eta_phi_mass(p4)
    first, second = np.triu_indices(k, 1)
    events = np.arange(n)
    for _ in range(k - 1):
        distance = _delta_r2(
            eta[events][:, first],
            phi[events][:, first],
            eta[events][:, second],
            phi[events][:, second],
        )
        distance[~(valid[events][:, first] & valid[events][:, second])] = np.inf
        closest = distance.argmin(axis=1)
        todo = distance[np.arange(len(events)), closest] < _JET_RADIUS**2
        events, closest = events[todo], closest[todo]
        if not len(events):
            break
        i, j = first[closest], second[closest]
        p4[events, i] += p4[events, j]
        flavour[events, i] = np.maximum(flavour[events, i], flavour[events, j])
        valid[events, j] = False
        merged[events, i] = True
        _, eta[events, i], phi[events, i], _ = _to_pt_eta_phi_mass(p4[events, i])
    return p4, flavour, valid, merged


def _breit_wigner(
    rng: np.random.Generator, n: int, mass: float, width: float, half_range: float
) -> np.ndarray:
    """Breit-Wigner masses truncated to ``mass ± half_range`` (inverse-CDF sampling)."""
    limit = math.atan(2.0 * half_range / width)
    return mass + 0.5 * width * np.tan(rng.uniform(-limit, limit, n))


def _two_body_decay(
    rng: np.random.Generator, mass: np.ndarray, mass1: np.ndarray, mass2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic two-body decay in the parent's rest frame; four-momenta ``(E, px, py, pz)``."""
    m2 = mass**2
    lam = (m2 - (mass1 + mass2) ** 2) * (m2 - (mass1 - mass2) ** 2)
    p = np.sqrt(np.maximum(lam, 0.0)) / (2.0 * mass)
    cos_theta = rng.uniform(-1.0, 1.0, len(mass))
    sin_theta = np.sqrt(1.0 - cos_theta**2)
    phi = rng.uniform(-np.pi, np.pi, len(mass))
    direction = np.stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta], axis=-1)
    momentum = p[:, None] * direction
    first = np.concatenate([np.sqrt(p**2 + mass1**2)[:, None], momentum], axis=-1)
    second = np.concatenate([np.sqrt(p**2 + mass2**2)[:, None], -momentum], axis=-1)
    return first, second


def _boost(p4: np.ndarray, parent: np.ndarray, parent_mass: np.ndarray) -> np.ndarray:
    """Boost ``p4`` from the rest frame of ``parent`` (lab four-momentum) to the lab."""
    beta = parent[:, 1:] / parent[:, :1]
    gamma = parent[:, 0] / parent_mass
    beta_p = (beta * p4[:, 1:]).sum(axis=1)
    scale = gamma**2 / (gamma + 1.0) * beta_p + gamma * p4[:, 0]
    energy = gamma * (p4[:, 0] + beta_p)
    return np.concatenate([energy[:, None], p4[:, 1:] + beta * scale[:, None]], axis=1)


def _to_pt_eta_phi_mass(p4: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(pt, eta, phi, mass)`` of four-momenta ``(..., 4)`` ordered ``(E, px, py, pz)``."""
    energy, px, py, pz = np.moveaxis(p4, -1, 0)
    pt = np.hypot(px, py)
    eta = np.arcsinh(pz / np.maximum(pt, 1e-9))
    mass = np.sqrt(np.maximum(energy**2 - pt**2 - pz**2, 0.0))
    return pt, eta, np.arctan2(py, px), mass


def _wrap_phi(phi: np.ndarray) -> np.ndarray:
    """Azimuth wrapped into ``[-π, π)`` (``floor`` is much faster than a float modulo)."""
    return phi - 2.0 * np.pi * np.floor((phi + np.pi) / (2.0 * np.pi))


def _delta_r2(eta1: np.ndarray, phi1: np.ndarray, eta2: np.ndarray, phi2: np.ndarray) -> np.ndarray:
    """Squared ΔR between directions whose azimuths lie in ``[-π, π]``."""
    d_phi = np.abs(phi1 - phi2)
    d_phi = np.minimum(d_phi, 2.0 * np.pi - d_phi)
    return (eta1 - eta2) ** 2 + d_phi**2


def _concat(parts: list[np.ndarray], n: int, dtype: type) -> np.ndarray:
    """Concatenate chunk arrays, keep the first ``n`` values, cast to ``dtype``."""
    if not parts:
        return np.zeros(0, dtype=dtype)
    return np.concatenate(parts)[:n].astype(dtype, copy=False)


def _check_kind(kind: object) -> None:
    """Raise a clear error unless ``kind`` is one of ``KINDS``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}; got {kind!r}")


def _check_int(name: str, value: object, *, minimum: int, limit: int | None = None) -> None:
    """Raise a clear error unless ``value`` is an integer in ``[minimum, limit)``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer; got {value!r} ({type(value).__name__})")
    if value < minimum or (limit is not None and value >= limit):
        upper = "" if limit is None else f" and below {limit}"
        raise ValueError(f"{name} must be at least {minimum}{upper}; got {value!r}")
