"""A reference profile built from the first rows a model version served, for a version
that has none from its training data (``drift.job``, with ``auto_reference_rows``).

The ``predictions`` view holds every model's columns, each NULL in the rows of models that
do not log it: a version's own columns are those with a value in its rows, and only they
are profiled (``drift.profile.build_profile``). A version whose rows hold only lists
(tensors, which drift does not test) or no value at all has nothing to profile: that is
``NothingToProfile``, which the job reports as a skip, not as a failure.
"""

from __future__ import annotations

import duckdb

from drift.fetched_values import unmask
from drift.profile import ReferenceProfile, build_profile, infer_kind
from drift.window import is_nested_type, quote_identifier, view_columns
from monitoring.prediction_log.catalog import sql_string

_ROLES = ("in_", "out_")


class NothingToProfile(ValueError):
    """A model version whose logged rows hold no value a profile describes: lists
    (tensors) only, or no input or output value at all. Drift has nothing to test in it,
    which is normal for a tensor model; the job skips it (``drift.job``)."""


def profile_from_log(
    con: duckdb.DuckDBPyConnection, model: str, version: str, rows: int
) -> ReferenceProfile | None:
    """The profile of the first ``rows`` rows the version answered (any role, status
    below 400, by timestamp); None while it has answered fewer. No performance
    reference: which output is the prediction is not known here.

    The view holds every model's columns, NULL in the others' rows: only the columns with
    a value in this version's rows are its own. Raises ``NothingToProfile`` when none of
    those can be profiled."""
    types = {name: t for name, t in view_columns(con).items() if name.startswith(_ROLES)}
    names = sorted(types, key=lambda name: not name.startswith("in_"))  # inputs first
    if not names:
        return None
    # A list column is only asked whether it holds a value: its tensors are not profiled.
    selected = ", ".join(
        f"{quote_identifier(name)} IS NOT NULL AS {quote_identifier(name)}"
        if is_nested_type(types[name])
        else quote_identifier(name)
        for name in names
    )
    query = (
        f"SELECT {selected} FROM predictions "
        f"WHERE model = {sql_string(model)} AND version = {sql_string(version)} "
        f'AND status < 400 ORDER BY "timestamp", request_id, "row" LIMIT {int(rows)}'
    )
    fetched = {name: unmask(values) for name, values in con.execute(query).fetchnumpy().items()}
    if len(fetched[names[0]]) < rows:
        return None
    lists = [name for name in names if is_nested_type(types[name]) and fetched[name].any()]
    columns = {
        name: fetched[name]
        for name in names
        if not is_nested_type(types[name]) and infer_kind(fetched[name]) is not None
    }
    if not columns:
        raise NothingToProfile(
            "nothing to test (its values are all in list columns, which drift does not "
            f"test: {', '.join(lists)})"
            if lists
            else f"nothing to test (no input or output value in its first {rows} rows)"
        )
    return build_profile(model, version, columns, f"log:first {rows} rows")
