"""Job config loading: validation errors name the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from sparkhep.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]

MINIMAL = """
[job]
name = "mini"

[samples.sig]
label = "signal"
paths = ["${SPARKHEP_TEST_DATA}/sig_*.root"]

[samples.bkg]
label = "background"
paths = "bkg.root"

[features]
weight = "genWeight"
[[features.collections]]
prefix = "Jet"
n = 2
fields = ["pt"]
[features.event]
HT = { kind = "ht", collection = "Jet" }

[model]
engine = "gbt"
[model.params]
maxIter = 5
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(text)
    return path


def test_minimal_config_expands_variables_and_resolves_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARKHEP_TEST_DATA", "/data/x")
    monkeypatch.chdir(tmp_path)
    config = load_config(_write(tmp_path, MINIMAL))
    assert config.sample("sig").paths == ("/data/x/sig_*.root",)
    assert config.sample("bkg").paths == (str(tmp_path / "bkg.root"),)
    assert config.sample("sig").label == 1 and config.sample("bkg").label == 0
    assert config.output == str(tmp_path / "output" / "mini")
    assert config.features.feature_names() == ["Jet1_pt", "Jet1_mask", "Jet2_pt", "Jet2_mask", "HT"]
    assert config.features.branches_to_read() == [
        "run", "luminosityBlock", "event", "genWeight", "Jet_pt"
    ]  # fmt: skip
    assert (config.split.train, config.split.test) == (0.7, 0.3)
    assert config.mlflow.registered_model == "mini"
    assert config.model.params == {"maxIter": 5}


def test_set_overrides_are_typed_toml_values(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARKHEP_TEST_DATA", "/d")
    config = load_config(
        _write(tmp_path, MINIMAL),
        overrides=["model.params.maxDepth=6", "model.params.stepSize=0.05", "split.train=0.8",
                   "split.test=0.2", "mlflow.registered_model=other"],
    )  # fmt: skip
    assert config.model.params == {"maxIter": 5, "maxDepth": 6, "stepSize": 0.05}
    assert config.split.train == 0.8
    assert config.mlflow.registered_model == "other"


def test_mistyped_key_names_key_file_and_closest(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARKHEP_TEST_DATA", "/d")
    path = _write(tmp_path, MINIMAL.replace('prefix = "Jet"', 'prefx = "Jet"'))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}: missing required key 'features.collections[0].prefix' "
        "(found 'features.collections[0].prefx': misspelt?)"
    )


def test_unknown_key_suggests_closest(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARKHEP_TEST_DATA", "/d")
    path = _write(tmp_path, MINIMAL.replace("[model]\n", "[model]\nengnie = 'gbt'\n"))
    with pytest.raises(ConfigError, match=r"unknown key 'model.engnie'.*'engine'"):
        load_config(path)


def test_missing_key_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARKHEP_TEST_DATA", "/d")
    path = _write(tmp_path, MINIMAL.replace('label = "signal"\n', ""))
    with pytest.raises(ConfigError, match=rf"{path}: missing required key 'samples.sig.label'"):
        load_config(path)


def test_wrong_type_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARKHEP_TEST_DATA", "/d")
    path = _write(tmp_path, MINIMAL.replace("n = 2", 'n = "two"'))
    with pytest.raises(ConfigError, match=r"'features.collections\[0\].n' must be int, got 'two'"):
        load_config(path)


def test_unset_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("SPARKHEP_TEST_DATA", raising=False)
    with pytest.raises(ConfigError, match=r"samples.sig.paths\[0\].*SPARKHEP_TEST_DATA"):
        load_config(_write(tmp_path, MINIMAL))


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[job\n"))


def test_shipped_configs_are_valid(monkeypatch):
    monkeypatch.chdir(REPO)
    tthad = load_config(REPO / "conf/jobs/tthad.toml")
    assert len(tthad.features.feature_names()) == 6 * (5 + 1) + 8
    assert tthad.sample("ttbar").label == 1 and tthad.sample("qcd").label == 0
    demo = load_config(REPO / "conf/jobs/demo.toml")
    assert demo.features == tthad.features


def test_weights_split_model_and_search_sections(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARKHEP_TEST_DATA", "/d")
    text = MINIMAL.replace('label = "signal"\n', 'label = "signal"\nxsec = 831.8\n', 1).replace(
        'paths = "bkg.root"\n', 'paths = "bkg.root"\nxsec = 1.5e6\nsum_genweight = 2.0\n'
    )
    text += """
[model.xgboost]
max_depth = 4
[weights]
lumi = 138000.0
negative = "keep"
[split]
train = 0.6
validation = 0.1
test = 0.3
kfold = 2
[search]
parallelism = 3
points = [{ stepSize = 0.3 }]
[search.grid]
maxDepth = [3, 5]
maxBins = [16, 32]
"""
    text = text.replace('engine = "gbt"', 'engine = "xgboost"')
    config = load_config(_write(tmp_path, text), overrides=["model.params.max_depth=6"])
    assert (config.sample("sig").xsec, config.sample("bkg").sum_genweight) == (831.8, 2.0)
    assert (config.weights.lumi, config.weights.negative) == (138000.0, "keep")
    assert config.split.kfold == 2
    assert config.model.engine == "xgboost"
    assert config.model.params == {"max_depth": 6, "maxIter": 5}  # [model.params] wins
    assert config.search.parallelism == 3
    assert list(config.search.points) == [
        {"maxDepth": 3, "maxBins": 16}, {"maxDepth": 3, "maxBins": 32},
        {"maxDepth": 5, "maxBins": 16}, {"maxDepth": 5, "maxBins": 32}, {"stepSize": 0.3},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("[model]\n", "[weights]\nnegative = 'keep'\n[model]\n"), "only with model.engine"),
        (("[model]\n", "[search.grid]\nmaxDepth = [3]\n[model]\n"), "set split.validation > 0"),
        (('fields = ["pt"]', 'fields = ["pt", "hadronFlavour"]'), "generator-truth"),
        (('fields = ["pt"]', 'fields = ["pt"]\nselection = "__import__(1)"'), "only the functions"),
        (('label = "signal"\n', 'label = "signal"\nxsec = 1.0\n'), "give every sample"),
        (("[model]\n", "[split]\nkfold = 1\n[model]\n"), "kfold"),
    ],
)
def test_inconsistent_sections_are_errors(tmp_path, monkeypatch, edit, message):
    monkeypatch.setenv("SPARKHEP_TEST_DATA", "/d")
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, MINIMAL.replace(*edit, 1)))
