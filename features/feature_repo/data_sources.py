"""Where the feature tables live: one parquet FileSource per table of features/aggregates.py.

Paths come from the Settings passed in, never from the working directory, so the same
definitions serve tests (a tmp_path state folder) and the default `.state/`.
"""

from __future__ import annotations

from feast import FileSource

from features.aggregates import FEATURE_TABLES, feature_table_path
from ranklab import schema
from ranklab.settings import Settings


def feature_sources(settings: Settings) -> dict[str, FileSource]:
    """A FileSource per feature table, keyed by table name."""
    return {
        table: FileSource(
            name=table,
            path=str(feature_table_path(settings, table)),
            timestamp_field=schema.EVENT_TIMESTAMP,
            description=f"Daily point-in-time snapshots of {table} (features/aggregates.py).",
        )
        for table in FEATURE_TABLES
    }
