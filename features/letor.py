"""Real learning-to-rank data in LETOR text format, through the same ``TrainingSet`` contract.

The format, as MSLR-WEB10K/30K, Yahoo LTR and Istella ship it, one document per line::

    <grade> qid:<query> <feature id>:<value> <feature id>:<value> ... [# comment]

Feature ids are 1-based and sparse (an absent feature is 0). A query plays the role of a
session, its documents the role of shown items, and the grade the role of the label, so real
data goes through the same training, evaluation and registry path as the generated data.
There is no ground truth beyond the grade, and no logged position: nothing to debias.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ranklab.schema import ITEM_ID, LABEL, SESSION_ID, SPLIT, SPLITS, TrainingSet

MSLR_FILES = {"train": "train.txt", "valid": "vali.txt", "test": "test.txt"}


@dataclass(frozen=True)
class _SparseRows:
    """One parsed file: per-row query and grade, and the (row, feature id, value) triplets."""

    path: Path
    qids: list[str]
    grades: np.ndarray
    rows: np.ndarray
    feature_ids: np.ndarray  # 1-based
    values: np.ndarray

    @property
    def max_feature_id(self) -> int:
        return int(self.feature_ids.max()) if len(self.feature_ids) else 0


def feature_names(n_features: int) -> list[str]:
    """``f1 .. fN``: column names that keep the file's 1-based feature ids readable."""
    return [f"f{k}" for k in range(1, n_features + 1)]


def read_letor(path: Path | str, n_features: int | None = None) -> pd.DataFrame:
    """Parse one LETOR file into ``session_id``, ``label`` and float32 ``f1 .. fN`` columns.

    ``N`` is the largest feature id in the file, or ``n_features`` when given (so that train
    and test files align; a larger id is then an error). ``session_id`` is the qid as written
    (int when every qid is an integer, else str); rows are grouped by query in order of first
    appearance. Malformed lines raise ``ValueError`` naming the file, the line and the problem.
    """
    parsed = _parse(Path(path), n_features)
    return _to_frame(parsed, n_features if n_features is not None else parsed.max_feature_id)


def letor_training_set(
    train_path: Path | str,
    test_path: Path | str | None = None,
    valid_path: Path | str | None = None,
    valid_fraction: float = 0.2,
    seed: int = 7,
    test_fraction: float = 0.2,
) -> TrainingSet:
    """A ``TrainingSet`` from LETOR files; missing test or valid parts are split from train.

    Splits taken from train hold whole queries (a query never straddles two splits), drawn
    deterministically from ``seed``: test first (``test_fraction`` of the queries), then
    valid (``valid_fraction`` of the rest). All files share ``f1 .. fN`` with ``N`` the
    largest feature id in any of them.
    """
    paths = {"train": train_path, "valid": valid_path, "test": test_path}
    parsed = {split: _parse(Path(p)) for split, p in paths.items() if p is not None}
    n_features = max(part.max_feature_id for part in parsed.values())
    parts = {split: _to_frame(part, n_features) for split, part in parsed.items()}
    prefixed = _disambiguate_sessions(parts)
    rng = np.random.default_rng(seed)
    if "test" not in parts:
        parts["train"], parts["test"] = _hold_out_queries(parts["train"], test_fraction, rng)
    if "valid" not in parts:
        parts["train"], parts["valid"] = _hold_out_queries(parts["train"], valid_fraction, rng)

    frame = pd.concat([_with_split(parts[split], split) for split in SPLITS], ignore_index=True)
    frame.insert(1, ITEM_ID, frame.groupby(SESSION_ID, sort=False).cumcount().astype(np.int64))
    metadata = {
        "files": {split: str(Path(p)) for split, p in paths.items() if p is not None},
        "split_from_train": [split for split in ("valid", "test") if paths[split] is None],
        "n_features": n_features,
        "queries": {split: int(parts[split][SESSION_ID].nunique()) for split in SPLITS},
        "rows": {split: len(parts[split]) for split in SPLITS},
        "session_id_prefixed_with_split": prefixed,
        "seed": seed,
    }
    return TrainingSet(frame, feature_names(n_features), source="letor", metadata=metadata)


def load_mslr_fold(folder: Path | str, seed: int = 7) -> TrainingSet:
    """One MSLR-WEB10K/30K fold folder (``train.txt``, ``vali.txt``, ``test.txt``)."""
    folder = Path(folder)
    paths = {split: folder / name for split, name in MSLR_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"MSLR fold {folder} lacks {missing}; expected {sorted(MSLR_FILES.values())}"
        )
    return letor_training_set(paths["train"], paths["test"], paths["valid"], seed=seed)


# ---- parsing ----
def _parse(path: Path, n_features: int | None = None) -> _SparseRows:
    """Parse every data line of ``path``; blank and comment-only lines are skipped.

    Fast path: the grade and qid of each line are read in Python, and all ``id:value`` pairs
    of the file are parsed by numpy in one call and checked as arrays. Only when a check
    fails is the offending line walked token by token, to say exactly what is wrong.
    """
    if not path.is_file():
        raise FileNotFoundError(f"LETOR file not found: {path}")
    line_numbers, grades, qids, texts = _split_lines(path)
    pair_counts = np.array([len(text.split()) for text in texts], dtype=np.int64)
    try:
        numbers = np.fromstring(" ".join(texts).replace(":", " "), sep=" ")
    except ValueError:  # a non-numeric token somewhere: find it
        numbers = np.empty(0)
    if len(numbers) != 2 * pair_counts.sum():
        _raise_for_first_bad_line(path, line_numbers, texts, n_features, range(len(texts)))
    rows = np.repeat(np.arange(len(texts)), pair_counts)
    ids, values = numbers[0::2], numbers[1::2]
    bad_rows = _rows_with_bad_pairs(rows, ids, values, n_features)
    if len(bad_rows):
        _raise_for_first_bad_line(path, line_numbers, texts, n_features, bad_rows)
    return _SparseRows(
        path=path,
        qids=qids,
        grades=np.array(grades, dtype=np.int64),
        rows=rows,
        feature_ids=ids.astype(np.int64),
        values=values.astype(np.float32),
    )


def _split_lines(path: Path) -> tuple[list[int], list[int], list[str], list[str]]:
    """(line number, grade, qid, feature text) of each data line, grade and qid checked."""
    line_numbers: list[int] = []
    grades: list[int] = []
    qids: list[str] = []
    texts: list[str] = []
    with path.open(encoding="utf-8") as lines:
        for line_no, line in enumerate(lines, start=1):
            tokens = line.split("#", 1)[0].split(maxsplit=2)
            if not tokens:
                continue
            where = f"{path}, line {line_no}"
            grades.append(_grade(tokens[0], where))
            qids.append(_qid(tokens, where))
            texts.append(tokens[2] if len(tokens) > 2 else "")
            line_numbers.append(line_no)
    if not grades:
        raise ValueError(f"{path}: no data lines (expected '<grade> qid:<query> <id>:<value> ...')")
    return line_numbers, grades, qids, texts


def _grade(token: str, where: str) -> int:
    try:
        grade = int(token)
    except ValueError:
        grade = -1
    if grade < 0:
        raise ValueError(f"{where}: bad grade {token!r} (expected a non-negative integer)")
    return grade


def _qid(tokens: list[str], where: str) -> str:
    if len(tokens) < 2 or not tokens[1].startswith("qid:") or tokens[1] == "qid:":
        found = tokens[1] if len(tokens) > 1 else "nothing"
        raise ValueError(
            f"{where}: missing qid (expected 'qid:<query>' after the grade, got {found!r})"
        )
    return tokens[1][4:]


def _rows_with_bad_pairs(
    rows: np.ndarray, ids: np.ndarray, values: np.ndarray, n_features: int | None
) -> np.ndarray:
    """Rows holding a non-integer, zero or too large id, a non-finite value or a repeated id."""
    bad = (ids != np.floor(ids)) | (ids < 1) | ~np.isfinite(values)
    if n_features is not None:
        bad |= ids > n_features
    order = np.lexsort((ids, rows))
    repeated = (np.diff(rows[order]) == 0) & (np.diff(ids[order]) == 0)
    return np.union1d(rows[bad], rows[order][1:][repeated])


def _raise_for_first_bad_line(
    path: Path,
    line_numbers: list[int],
    texts: list[str],
    n_features: int | None,
    candidate_rows: np.ndarray | range,
) -> None:
    """Re-check the candidate rows one by one and raise for the first that is malformed."""
    for row in candidate_rows:
        problem = _line_problem(texts[row], n_features)
        if problem:
            raise ValueError(f"{path}, line {line_numbers[row]}: {problem}")
    raise ValueError(f"{path}: could not parse the features of this file")


def _line_problem(text: str, n_features: int | None) -> str | None:
    """What is wrong with one line's ``id:value`` pairs, or None when nothing is."""
    seen: set[int] = set()
    for pair in text.split():
        feature_id, colon, value = pair.partition(":")
        if not colon or ":" in value:
            return f"feature {pair!r} is not 'id:value'"
        if not feature_id.isdigit() or int(feature_id) == 0:
            return f"feature id {feature_id!r} in {pair!r} is not a 1-based integer id"
        if n_features is not None and int(feature_id) > n_features:
            return f"feature id {feature_id} > n_features={n_features}"
        if int(feature_id) in seen:
            return f"duplicate feature id {feature_id}"
        seen.add(int(feature_id))
        try:
            number = float(value)
        except ValueError:
            return f"value {value!r} of feature {feature_id} is not a number"
        if not np.isfinite(number):
            return f"value {value!r} of feature {feature_id} is not a finite number"
    return None


# ---- frames and splits ----
def _to_frame(parsed: _SparseRows, n_features: int) -> pd.DataFrame:
    """Dense frame, rows grouped by query in order of first appearance."""
    matrix = np.zeros((len(parsed.grades), n_features), dtype=np.float32)
    matrix[parsed.rows, parsed.feature_ids - 1] = parsed.values
    codes, _ = pd.factorize(pd.Series(parsed.qids))
    order = np.argsort(codes, kind="stable")
    frame = pd.DataFrame(matrix[order], columns=feature_names(n_features))
    frame.insert(0, SESSION_ID, _session_ids(parsed.qids)[order])
    frame.insert(1, LABEL, parsed.grades[order])
    return frame


def _session_ids(qids: list[str]) -> np.ndarray:
    """The qids as written: integers when they all are, else strings."""
    try:
        return np.array([int(q) for q in qids], dtype=np.int64)
    except ValueError:
        return np.array(qids, dtype=object)


def _disambiguate_sessions(parts: dict[str, pd.DataFrame]) -> bool:
    """Prefix session ids with their split when two files share a qid, so every session
    stays in one split. Returns whether it had to."""
    seen: set[object] = set()
    overlap = False
    for frame in parts.values():
        ids = set(frame[SESSION_ID].unique())
        overlap |= bool(seen & ids)
        seen |= ids
    if overlap:
        for split, frame in parts.items():
            frame[SESSION_ID] = split + ":" + frame[SESSION_ID].astype(str)
    return overlap


def _hold_out_queries(
    frame: pd.DataFrame, fraction: float, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, held out): ``fraction`` of the queries, whole, drawn by ``rng``."""
    queries = frame[SESSION_ID].unique()
    n_held = round(fraction * len(queries))
    if not 0 < fraction < 1 or not 0 < n_held < len(queries):
        raise ValueError(
            f"cannot hold out fraction {fraction} of {len(queries)} queries: "
            "both parts need at least one query"
        )
    held = frame[SESSION_ID].isin(rng.choice(queries, size=n_held, replace=False))
    return frame[~held], frame[held]


def _with_split(frame: pd.DataFrame, split: str) -> pd.DataFrame:
    return frame.assign(**{SPLIT: split})
