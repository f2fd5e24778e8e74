"""The SYNTHETIC event generator: reproducibility, selection, physics sanity and the file layout."""

from __future__ import annotations

import itertools
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from sparkhep import generate
from sparkhep.generate import generate_events, write_demo_samples, write_sample

N_EVENTS = 20_000
SEED = 11

BRANCHES = {
    "run": "uint32_t",
    "luminosityBlock": "uint32_t",
    "event": "uint64_t",
    "genWeight": "float",
    "MET_pt": "float",
    "MET_phi": "float",
    "nJet": "int32_t",
    "Jet_pt": "float[]",
    "Jet_eta": "float[]",
    "Jet_phi": "float[]",
    "Jet_mass": "float[]",
    "Jet_btagDeepB": "float[]",
    "Jet_hadronFlavour": "int32_t[]",
    "nMuon": "int32_t",
    "Muon_pt": "float[]",
    "Muon_eta": "float[]",
    "Muon_phi": "float[]",
    "Muon_charge": "int32_t[]",
}


@pytest.fixture(scope="module")
def signal() -> dict:
    return generate_events(N_EVENTS, kind="signal", seed=SEED)


@pytest.fixture(scope="module")
def background() -> dict:
    return generate_events(N_EVENTS, kind="background", seed=SEED)


@pytest.fixture(scope="module", params=["signal", "background"])
def events(request: pytest.FixtureRequest, signal: dict, background: dict) -> dict:
    return {"signal": signal, "background": background}[request.param]


def _flat(array: ak.Array) -> np.ndarray:
    return np.asarray(ak.flatten(array))


def _best_mass(events: dict, *, n_jets: int, target: float) -> np.ndarray:
    """Per event, the invariant mass of the ``n_jets`` leading-six jets closest to ``target``."""
    padded = {
        name: np.asarray(ak.fill_none(ak.pad_none(events[f"Jet_{name}"], 6, clip=True), np.nan))
        for name in ("pt", "eta", "phi", "mass")
    }
    pt, eta, phi, mass = (padded[name].astype(np.float64) for name in ("pt", "eta", "phi", "mass"))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    energy = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    masses = []
    for combination in itertools.combinations(range(6), n_jets):
        e, x, y, z = (a[:, list(combination)].sum(axis=1) for a in (energy, px, py, pz))
        masses.append(np.sqrt(np.maximum(e**2 - x**2 - y**2 - z**2, 0.0)))
    stacked = np.column_stack(masses)
    distance = np.where(np.isnan(stacked), np.inf, np.abs(stacked - target))
    return stacked[np.arange(len(stacked)), distance.argmin(axis=1)]


@pytest.mark.parametrize("kind", ["signal", "background"])
def test_same_seed_gives_identical_events_and_another_seed_different(kind: str) -> None:
    first = generate_events(2_000, kind=kind, seed=3)
    again = generate_events(2_000, kind=kind, seed=3)
    other = generate_events(2_000, kind=kind, seed=4)
    assert first.keys() == again.keys() == set(BRANCHES)
    for name in BRANCHES:
        assert ak.to_list(first[name]) == ak.to_list(again[name]), name
    assert not np.array_equal(_flat(first["Jet_pt"])[:100], _flat(other["Jet_pt"])[:100])
    assert not np.array_equal(first["MET_pt"], other["MET_pt"])


@pytest.mark.parametrize("kind", ["signal", "background"])
@pytest.mark.parametrize("n_events", [0, 1, 999, 5_000])
def test_exactly_n_events_pass_the_selection(kind: str, n_events: int) -> None:
    events = generate_events(n_events, kind=kind, seed=5)
    for name in BRANCHES:
        assert len(events[name]) == n_events, name
    assert np.array_equal(events["nJet"], np.asarray(ak.num(events["Jet_pt"])))
    assert np.array_equal(events["nMuon"], np.asarray(ak.num(events["Muon_pt"])))


def test_many_small_chunks_are_stitched_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generate, "_CHUNK_MIN", 100)
    monkeypatch.setattr(generate, "_CHUNK_MAX", 300)
    events = generate_events(2_345, kind="background", seed=6)
    assert len(events["event"]) == 2_345
    for collection, fields in (("Jet", generate.JET_FIELDS), ("Muon", generate.MUON_FIELDS)):
        for field in fields:
            counts = np.asarray(ak.num(events[f"{collection}_{field}"]))
            assert np.array_equal(counts, events[f"n{collection}"])
    assert (events["nJet"] >= 4).all()


def test_dtypes_in_memory(signal: dict) -> None:
    expected = {"run": np.uint32, "luminosityBlock": np.uint32, "event": np.uint64}
    expected |= {"genWeight": np.float32, "MET_pt": np.float32, "MET_phi": np.float32}
    expected |= {"nJet": np.int32, "nMuon": np.int32}
    for name, dtype in expected.items():
        assert signal[name].dtype == dtype, name
    for name in BRANCHES:
        if BRANCHES[name].endswith("[]"):
            dtype = np.int32 if BRANCHES[name].startswith("int32") else np.float32
            assert _flat(signal[name]).dtype == dtype, name


def test_jets_pass_the_selection_and_are_pt_ordered(events: dict) -> None:
    pt, eta = events["Jet_pt"], events["Jet_eta"]
    assert (_flat(pt) > 25.0).all()
    assert (np.abs(_flat(eta)) < 2.5).all()
    assert (events["nJet"] >= 4).all()
    assert ak.all(pt[:, 1:] <= pt[:, :-1])
    phi = _flat(events["Jet_phi"])
    assert (np.abs(phi) <= np.pi).all()
    assert (_flat(events["Jet_mass"]) >= 0.0).all()
    assert set(np.unique(_flat(events["Jet_hadronFlavour"]))) <= {0, 4, 5}
    btag = _flat(events["Jet_btagDeepB"])
    assert ((btag >= 0.0) & (btag <= 1.0)).all()


def test_muons_are_plausible_and_often_absent(events: dict) -> None:
    assert (_flat(events["Muon_pt"]) > 5.0).all()
    assert (np.abs(_flat(events["Muon_eta"])) < 2.4).all()
    assert set(np.unique(_flat(events["Muon_charge"]))) <= {-1, 1}
    assert ak.all(events["Muon_pt"][:, 1:] <= events["Muon_pt"][:, :-1])
    assert 0.5 < np.mean(events["nMuon"] == 0) < 0.99
    assert (events["MET_pt"] >= 0.0).all()


def test_signal_has_top_and_w_mass_peaks(signal: dict, background: dict) -> None:
    top = _best_mass(signal, n_jets=3, target=172.5)
    assert abs(np.median(top) - 172.5) < 15.0
    w = _best_mass(signal, n_jets=2, target=80.4)
    assert abs(np.median(w) - 80.4) < 10.0
    # The peak is the signal's own: far fewer background events have a triplet near 172.5.
    near_top = {
        kind: np.mean(np.abs(_best_mass(sample, n_jets=3, target=172.5) - 172.5) < 10.0)
        for kind, sample in (("signal", signal), ("background", background))
    }
    assert near_top["signal"] > 2 * near_top["background"]


def test_btag_efficiencies_per_flavour(signal: dict, background: dict) -> None:
    flavour = np.concatenate(
        [_flat(signal["Jet_hadronFlavour"]), _flat(background["Jet_hadronFlavour"])]
    )
    tagged = (
        np.concatenate([_flat(signal["Jet_btagDeepB"]), _flat(background["Jet_btagDeepB"])]) > 0.5
    )
    assert abs(tagged[flavour == 5].mean() - 0.73) < 0.015
    assert abs(tagged[flavour == 4].mean() - 0.12) < 0.015
    assert abs(tagged[flavour == 0].mean() - 0.016) < 0.003


def test_signal_is_richer_in_b_jets(signal: dict, background: dict) -> None:
    def b_jets_per_event(events: dict) -> float:
        return float(np.mean(ak.sum(events["Jet_hadronFlavour"] == 5, axis=1)))

    assert b_jets_per_event(signal) > 1.5
    assert b_jets_per_event(background) < 0.4


def test_gen_weights(signal: dict, background: dict) -> None:
    assert (signal["genWeight"] == 1.0).all()
    weight = background["genWeight"]
    assert (weight > 0.0).all()
    assert (weight <= 1.0).all()
    assert weight.std() > 0.1
    assert weight.min() < 1e-3 < 0.5 < weight.max()


def test_event_numbers_follow_seed_kind_and_first_event() -> None:
    signal = generate_events(10, kind="signal", seed=7, first_event=1_500)
    background = generate_events(10, kind="background", seed=7, first_event=1_500)
    assert signal["event"][0] == 14 * 10**12 + 1_501
    assert background["event"][0] == 15 * 10**12 + 1_501
    assert (signal["run"] == 1).all()
    assert (signal["luminosityBlock"] == 2).all()
    assert not np.intersect1d(signal["event"], background["event"]).size


def test_written_files_have_the_nanoaod_layout_and_unique_events(tmp_path: Path) -> None:
    paths = {
        kind: write_sample(tmp_path, kind=kind, n_events=3_001, n_files=2, seed=SEED)
        for kind in ("signal", "background")
    }
    assert [p.name for p in paths["signal"]] == [
        "synthetic_signal_1.root",
        "synthetic_signal_2.root",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for kind_paths in paths.values() for p in kind_paths
    )
    event_numbers, entries = [], []
    for path in paths["signal"] + paths["background"]:
        with uproot.open(path) as file:
            assert file.keys() == ["Events;1"]
            tree = file["Events"]
            assert "SYNTHETIC" in tree.title
            names = tree.keys()
            assert names == list(BRANCHES)
            assert {name: tree[name].typename for name in names} == BRANCHES
            arrays = tree.arrays(library="ak")
            assert str(ak.type(arrays["Jet_pt"]).content) == "var * float32"
            assert str(ak.type(arrays["Jet_hadronFlavour"]).content) == "var * int32"
            assert str(ak.type(arrays["Muon_charge"]).content) == "var * int32"
            assert arrays["event"].type.content.primitive == "uint64"
            assert np.array_equal(np.asarray(arrays["nJet"]), np.asarray(ak.num(arrays["Jet_pt"])))
            entries.append(tree.num_entries)
            event_numbers.append(np.asarray(arrays["event"]))
    assert entries == [1_501, 1_500, 1_501, 1_500]
    all_events = np.concatenate(event_numbers)
    assert len(np.unique(all_events)) == len(all_events) == 6_002


def test_written_file_holds_generate_events_blocks(tmp_path: Path) -> None:
    (path,) = write_sample(tmp_path, kind="signal", n_events=500, seed=2, prefix="toy")
    assert path.name == "toy_1.root"
    expected = generate_events(500, kind="signal", seed=2)
    with uproot.open(path) as file:
        arrays = file["Events"].arrays(library="ak")
    for name in BRANCHES:
        assert ak.to_list(arrays[name]) == ak.to_list(expected[name]), name


@pytest.mark.shared_data
def test_layout_matches_the_real_pythia_sample(shared_data: Path, tmp_path: Path) -> None:
    (path,) = write_sample(tmp_path, kind="background", n_events=100, seed=1)
    layouts = []
    for file_path in (shared_data / "pythia" / "qcd_1.root", path):
        with uproot.open(file_path) as file:
            tree = file["Events"]
            names = tree.keys()
            layouts.append([(name, tree[name].typename) for name in names])
    assert layouts[0] == layouts[1]


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_generate = generate.generate_events

    def failing(n_events: int, **options: object) -> dict:
        if options["first_event"]:
            raise RuntimeError("disk on fire")
        return real_generate(n_events, **options)

    monkeypatch.setattr(generate, "generate_events", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_sample(tmp_path, kind="signal", n_events=200, n_files=2, seed=1)
    assert list(tmp_path.iterdir()) == []


def test_demo_samples(tmp_path: Path) -> None:
    samples = write_demo_samples(tmp_path, n_events=400)
    assert set(samples) == {"signal", "background"}
    for kind, paths in samples.items():
        assert [p.name for p in paths] == [f"synthetic_{kind}_1.root", f"synthetic_{kind}_2.root"]
        assert all(p.is_file() for p in paths)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: generate_events(10, kind="ttbar", seed=1), ValueError, "kind must be one of"),
        (lambda: generate_events(-1, kind="signal", seed=1), ValueError, "n_events must be"),
        (lambda: generate_events(10, kind="signal", seed=-2), ValueError, "seed must be"),
        (lambda: generate_events(10, kind="signal", seed=2**22), ValueError, "below"),
        (lambda: generate_events(10, kind="signal", seed=1.5), TypeError, "seed must be an int"),
        (
            lambda: generate_events(10, kind="signal", seed=1, first_event=10**12),
            ValueError,
            "first_event \\+ n_events",
        ),
        (
            lambda: write_sample(Path("unused"), kind="signal", n_events=1, n_files=2, seed=1),
            ValueError,
            "at least n_files",
        ),
        (
            lambda: write_sample(Path("unused"), kind="signal", n_events=5, seed=1, prefix="a/b"),
            ValueError,
            "prefix",
        ),
    ],
)
def test_bad_arguments_raise_clear_errors(call, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()
