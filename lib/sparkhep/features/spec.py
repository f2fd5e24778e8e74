"""The feature specification: what to compute from the raw event branches.

A ``FeatureSpec`` is parsed once from the job config and travels with the model (``to_dict`` /
``from_dict``, plain JSON), so that the training job (in Spark) and the server (in plain numpy)
compute the same columns from the same branches. It also derives the list of branches to read,
so that nothing else is read, and it refuses generator-truth branches unless told otherwise.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sparkhep.features import expression

EventKind = Literal["count", "ht", "nbtag", "branch", "expr", "top_mass", "w_mass", "dr_bb"]
EVENT_KINDS: tuple[str, ...] = (
    "count",
    "ht",
    "nbtag",
    "branch",
    "expr",
    "top_mass",
    "w_mass",
    "dr_bb",
)
COLLECTION_KINDS = ("count", "ht", "nbtag", "top_mass", "w_mass", "dr_bb")
FOUR_VECTOR = ("pt", "eta", "phi", "mass")
TRUTH_PATTERNS: tuple[str, ...] = (
    "*_hadronFlavour",
    "*_partonFlavour",
    "*_genPartIdx",
    "*_genPartFlav",
    "*_genJetIdx",
    "GenPart_*",
    "GenJet*",
    "GenMET_*",
    "nGen*",
    "LHE*",
    "nLHE*",
    "genWeight",
    "Generator_*",
)
SPEC_VERSION = 1


def is_truth(branch: str) -> bool:
    """Whether a branch holds generator truth (``Jet_hadronFlavour``, ``GenPart_pt``, ``LHE*``…)."""
    return any(fnmatch.fnmatchcase(branch, pattern) for pattern in TRUTH_PATTERNS)


@dataclass(frozen=True)
class CollectionFeatures:
    """The leading ``n`` objects of a collection (``Jet_pt``, ``Jet_eta``, …), ordered by a field.

    Objects failing ``selection`` (an expression on the collection's fields, e.g.
    ``pt > 30 and abs(eta) < 2.4``) are removed first. Columns are named
    ``<prefix><slot>_<field>`` with slots counted from 1 (``Jet1_pt``); slots beyond the number
    of objects hold ``fill_value``, and with ``mask`` a column ``<prefix><slot>_mask`` is 1 for
    a real object and 0 for padding.
    """

    prefix: str
    n: int
    order_by: str = "pt"
    fields: tuple[str, ...] = ("pt",)
    fill_value: float = 0.0
    selection: str | None = None
    mask: bool = True

    def branch(self, name: str) -> str:
        """The branch holding one field of this collection, e.g. ``Jet_pt``."""
        return f"{self.prefix}_{name}"

    def columns(self) -> list[str]:
        """Output column names, slot-major: ``Jet1_pt, Jet1_eta, …, Jet1_mask, Jet2_pt, …``."""
        names = [*self.fields, "mask"] if self.mask else list(self.fields)
        return [f"{self.prefix}{slot}_{name}" for slot in range(1, self.n + 1) for name in names]

    def branches(self) -> list[str]:
        """Branches this block reads."""
        selected = expression.names(self.selection) if self.selection else []
        return _unique([self.branch(f) for f in [self.order_by, *self.fields, *selected]])


@dataclass(frozen=True)
class EventFeature:
    """One number per event.

    Kinds:
        ``count``: number of (selected) objects in ``collection``.
        ``ht``: scalar sum of the (selected) objects' ``<collection>_pt``.
        ``nbtag``: number of (selected) objects whose ``<collection>_<field>`` is strictly above
            ``working_point``.
        ``branch``: the flat branch ``branch`` as it is.
        ``expr``: ``expression`` on branches (flat ones, or jagged ones reduced by ``sum``,
            ``max``, ``min``, ``mean``, ``count``), e.g. ``MET_pt / sqrt(sum(Jet_pt))``.
        ``top_mass``: the mass of the three-object combination (among the ``max_objects``
            leading selected objects) closest to ``TOP_MASS``.
        ``w_mass``: the mass of the pair within that combination closest to ``W_MASS``.
        ``dr_bb``: ΔR between the two leading objects whose ``<collection>_<field>`` is above
            ``working_point``.
    Events without enough objects (or a non-finite result) get ``fill_value``.
    """

    name: str
    kind: EventKind
    collection: str | None = None
    field: str = "btagDeepB"
    working_point: float | None = None
    branch: str | None = None
    expression: str | None = None
    selection: str | None = None
    max_objects: int = 6
    fill_value: float = 0.0

    def branches(self) -> list[str]:
        """Branches this feature reads."""
        if self.kind == "branch":
            return [str(self.branch)]
        if self.kind == "expr":
            return expression.names(str(self.expression))
        fields = {
            "count": ["pt"],
            "ht": ["pt"],
            "nbtag": [self.field],
            "top_mass": list(FOUR_VECTOR),
            "w_mass": list(FOUR_VECTOR),
            "dr_bb": ["pt", "eta", "phi", self.field],
        }[self.kind]
        if self.selection:
            fields += expression.names(self.selection)
        return _unique([f"{self.collection}_{f}" for f in fields])


@dataclass(frozen=True)
class FeatureSpec:
    """Everything needed to go from raw event branches to the model's input columns.

    Raises:
        ValueError: on construction, for a feature reading generator truth without
            ``allow_truth``, a disallowed expression, or duplicate feature names.
    """

    collections: tuple[CollectionFeatures, ...] = ()
    event: tuple[EventFeature, ...] = ()
    weight: str | None = None
    event_id: tuple[str, ...] = field(default=("run", "luminosityBlock", "event"))
    allow_truth: bool = False

    def __post_init__(self) -> None:
        for feature in self.event:
            if feature.kind in COLLECTION_KINDS and not feature.collection:
                raise ValueError(
                    f"event feature {feature.name!r} ({feature.kind}) needs a collection"
                )
            if feature.kind in ("nbtag", "dr_bb") and feature.working_point is None:
                raise ValueError(
                    f"event feature {feature.name!r} ({feature.kind}) needs a working_point"
                )
            if feature.kind == "expr" and not feature.expression:
                raise ValueError(f"event feature {feature.name!r} (expr) needs an expression")
        names = self.feature_names()
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"feature names {duplicates!r} are declared more than once")
        truth = [b for b in self.branches() if is_truth(b)]
        if truth and not self.allow_truth:
            raise ValueError(
                f"features read generator-truth branches {truth!r}; a model must not learn from "
                "truth by accident (set allow_truth = true in [features] for a truth-level study)"
            )

    def feature_names(self) -> list[str]:
        """The model's input columns, in the order the vector assembler uses."""
        names = [c for block in self.collections for c in block.columns()]
        return names + [feature.name for feature in self.event]

    def branches(self) -> list[str]:
        """Branches the features read (not the weight or event id)."""
        found = [b for block in self.collections for b in block.branches()]
        return _unique(found + [b for feature in self.event for b in feature.branches()])

    def branches_to_read(self) -> list[str]:
        """Everything a job reads from the input: event id, weight and feature branches."""
        extra = [self.weight] if self.weight else []
        return _unique([*self.event_id, *extra, *self.branches()])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description; ``FeatureSpec.from_dict`` reads it back."""
        return {"version": SPEC_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        """The spec described by ``data`` (the output of :meth:`to_dict`, e.g. via JSON).

        Args:
            data: the dictionary.

        Returns:
            The spec, validated as on construction.
        """
        version = data.get("version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise ValueError(f"feature spec version {version!r} is not {SPEC_VERSION}")
        return cls(
            collections=tuple(
                CollectionFeatures(**{**c, "fields": tuple(c["fields"])})
                for c in data.get("collections", [])
            ),
            event=tuple(EventFeature(**e) for e in data.get("event", [])),
            weight=data.get("weight"),
            event_id=tuple(data.get("event_id", ("run", "luminosityBlock", "event"))),
            allow_truth=bool(data.get("allow_truth", False)),
        )


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))
