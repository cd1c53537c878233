"""Exposures: one row per request served inside an experiment, with the clicks it got.

The readout never reads the simulator's truth. It reads what production has: the
prediction log (which arm answered each request, how, how fast) and the click events
joined by request id. The clicks come from the served traffic the front end logged
(``features.events.ServedTraffic.clicks``), in a simulation as in production. Both carry ``request_id``.

Columns of an exposure frame (``EXPOSURE_COLUMNS``):

| column | meaning |
|---|---|
| ``request_id`` | the served request |
| ``user_id`` | the randomisation unit: users, not requests, are assigned to arms; the log's ``user_pseudonym`` (``ranklab.privacy``), never a raw id |
| ``ts`` | when the request was served (UTC) |
| ``arm`` | the arm that served it (the log's ``experiment_arm``) |
| ``model_version`` | the registry version that answered |
| ``served_by`` | ``model`` or ``fallback:<reason>`` |
| ``latency_ms`` | the service's latency for the request |
| ``shown`` | items returned (the denominator of CTR) |
| ``clicks`` | clicks on those items (a session's clicks: one request is one search session) |
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from ranklab.privacy import Pseudonymiser, default_pseudonymiser
from ranklab.schema import SESSION_ID, USER_ID

REQUEST_ID = "request_id"
ARM = "arm"
TS = "ts"
SERVED_BY = "served_by"
MODEL_VERSION = "model_version"
LATENCY_MS = "latency_ms"
SHOWN = "shown"
CLICKS = "clicks"
SERVED_BY_MODEL = "model"
EXPOSURE_COLUMNS = (
    REQUEST_ID, USER_ID, TS, ARM, MODEL_VERSION, SERVED_BY, LATENCY_MS, SHOWN, CLICKS
)  # fmt: skip

# The log's columns naming the experiment and the arm (serving/prediction_log.py).
LOG_EXPERIMENT = "experiment"
LOG_ARM = "experiment_arm"
# The log stores users pseudonymised (serving/prediction_log.py, ranklab/privacy.py): the
# exposures are keyed by the pseudonym, and so must be every frame joined to them by user.
LOG_USER = "user_pseudonym"


class ExposureError(ValueError):
    """The log or the clicks cannot give a readout (missing columns, no exposures...)."""


def exposures_from_log(
    predictions: pd.DataFrame, clicks: pd.DataFrame, experiment: str | None = None
) -> pd.DataFrame:
    """The exposure frame of ``experiment`` from prediction-log rows and click events.

    Rows with no arm (served outside any experiment) are left out; when the log names the
    experiment, rows of other experiments are too. A request logged twice is an error: it
    would count its clicks twice.
    """
    needed = [REQUEST_ID, LOG_USER, "timestamp", LOG_ARM, MODEL_VERSION, SERVED_BY, LATENCY_MS, "k"]
    _require(predictions, needed, "prediction log")
    _require(clicks, [REQUEST_ID], "clicks")
    rows = predictions[predictions[LOG_ARM].notna()]
    if experiment is not None and LOG_EXPERIMENT in rows.columns:
        rows = rows[rows[LOG_EXPERIMENT] == experiment]
    if rows.empty:
        where = f"experiment {experiment!r}" if experiment else "any experiment"
        raise ExposureError(f"the prediction log holds no request served in {where}")
    repeated = rows[REQUEST_ID].duplicated()
    if repeated.any():
        raise ExposureError(
            f"{int(repeated.sum())} request ids appear twice in the prediction log, "
            f"e.g. {rows.loc[repeated, REQUEST_ID].iloc[0]!r}"
        )
    per_request = clicks.groupby(REQUEST_ID).size().rename(CLICKS)
    frame = pd.DataFrame(
        {
            REQUEST_ID: rows[REQUEST_ID].to_numpy(),
            USER_ID: rows[LOG_USER].to_numpy(dtype="int64"),
            TS: pd.to_datetime(rows["timestamp"], utc=True).to_numpy(),
            ARM: rows[LOG_ARM].astype(str).to_numpy(),
            MODEL_VERSION: rows[MODEL_VERSION].astype(str).to_numpy(),
            SERVED_BY: rows[SERVED_BY].astype(str).to_numpy(),
            LATENCY_MS: rows[LATENCY_MS].to_numpy(dtype=float),
            SHOWN: rows["k"].to_numpy(dtype="int64"),
        }
    )
    frame[TS] = pd.to_datetime(frame[TS], utc=True)
    frame[CLICKS] = per_request.reindex(frame[REQUEST_ID]).fillna(0).to_numpy(dtype="int64")
    return frame.sort_values(TS, kind="stable", ignore_index=True)


def pre_period_activity(
    tables: Mapping[str, pd.DataFrame],
    before: pd.Timestamp | None = None,
    pseudonymiser: Pseudonymiser | None = None,
) -> pd.DataFrame:
    """Per user, the searches and clicks logged before the experiment (the raw tables of the
    training window): ``user_id``, ``pre_sessions``, ``pre_clicks``. CUPED's covariates:
    they cannot be moved by the treatment, since they happened before it started.

    ``user_id`` holds the users' pseudonyms (``pseudonymiser``, default the environment's:
    the one the prediction log used), so the covariates join the exposures."""
    sessions, clicks = tables["sessions"], tables["clicks"]
    if before is not None:
        sessions = sessions[sessions["ts"] < before]
    clicks = clicks[clicks[SESSION_ID].isin(sessions[SESSION_ID])]
    user_of = sessions.set_index(SESSION_ID)[USER_ID]
    pre_sessions = sessions.groupby(USER_ID).size()
    pre_clicks = clicks.groupby(user_of.loc[clicks[SESSION_ID]].to_numpy()).size()
    out = pd.DataFrame({"pre_sessions": pre_sessions}).join(
        pd.DataFrame({"pre_clicks": pre_clicks}), how="left"
    )
    out = out.fillna(0).astype("int64")
    out.index = (pseudonymiser or default_pseudonymiser()).many(out.index)
    out.index.name = USER_ID
    return out.reset_index()


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ExposureError(f"{what} lacks columns {missing}; it has {list(frame.columns)}")
