"""The feature specification: what to compute from the raw event branches.

A ``FeatureSpec`` is parsed once from the job config and travels with the model, so that the
training job (in Spark) and the server (in plain numpy) compute the same columns from the same
branches. It also derives the list of branches to read, so that nothing else is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

EventKind = Literal["count", "ht", "nbtag", "branch"]
EVENT_KINDS: tuple[str, ...] = ("count", "ht", "nbtag", "branch")


@dataclass(frozen=True)
class CollectionFeatures:
    """The leading ``n`` objects of a collection (``Jet_pt``, ``Jet_eta``, …), ordered by a field.

    Columns are named ``<prefix><slot>_<field>`` with slots counted from 1 (``Jet1_pt``), and
    slots beyond the number of objects hold ``fill_value``.
    """

    prefix: str
    n: int
    order_by: str
    fields: tuple[str, ...]
    fill_value: float = 0.0

    def branch(self, name: str) -> str:
        """The branch holding one field of this collection, e.g. ``Jet_pt``."""
        return f"{self.prefix}_{name}"

    def columns(self) -> list[str]:
        """Output column names, slot-major: ``Jet1_pt, Jet1_eta, …, Jet2_pt, …``."""
        return [
            f"{self.prefix}{slot}_{name}" for slot in range(1, self.n + 1) for name in self.fields
        ]

    def branches(self) -> list[str]:
        """Branches this block reads."""
        return _unique([self.branch(self.order_by), *(self.branch(f) for f in self.fields)])


@dataclass(frozen=True)
class EventFeature:
    """One number per event.

    Kinds:
        ``count``: number of objects in ``collection`` (length of its ``<collection>_<field>``).
        ``ht``: scalar sum of ``<collection>_pt``.
        ``nbtag``: number of objects whose ``<collection>_<field>`` is strictly above
            ``working_point``.
        ``branch``: the flat branch ``branch`` as it is.
    """

    name: str
    kind: EventKind
    collection: str | None = None
    field: str = "pt"
    working_point: float | None = None
    branch: str | None = None

    def branches(self) -> list[str]:
        """Branches this feature reads."""
        if self.kind == "branch":
            return [str(self.branch)]
        return [f"{self.collection}_{self.field}"]


@dataclass(frozen=True)
class FeatureSpec:
    """Everything needed to go from raw event branches to the model's input columns."""

    collections: tuple[CollectionFeatures, ...] = ()
    event: tuple[EventFeature, ...] = ()
    weight: str | None = None
    event_id: tuple[str, ...] = field(default=("run", "luminosityBlock", "event"))

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


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))
