"""The LETOR loader on the shared real sample and on tiny hand-written files."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from features.letor import letor_training_set, load_mslr_fold, read_letor
from ranklab.schema import SPLITS
from ranklab.settings import get_settings

SAMPLE = get_settings().letor_dir  # ../shared beside the checkout, as in CI
TRAIN, TEST = SAMPLE / "train.txt", SAMPLE / "test.txt"

needs_sample = pytest.mark.skipif(not TRAIN.is_file(), reason="shared LETOR sample not present")


def _write(tmp_path: Path, text: str, name: str = "tiny.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- the shared sample ----
@needs_sample
def test_sample_train_parses_to_the_documented_shape():
    frame = read_letor(TRAIN)
    assert frame.shape == (3005, 2 + 300)
    assert frame["session_id"].nunique() == 201
    assert frame["session_id"].dtype == np.int64
    assert sorted(frame["label"].unique()) == [0, 1, 2, 3, 4]
    assert (frame.dtypes.iloc[2:] == np.float32).all()
    # First line: "0 qid:1 10:0.89 11:0.75 12:0.01 17:0.45 ...": absent ids are 0.
    first = frame.iloc[0]
    assert first["session_id"] == 1 and first["label"] == 0
    assert first[["f10", "f11", "f12", "f13"]].tolist() == pytest.approx([0.89, 0.75, 0.01, 0.0])


@needs_sample
def test_sample_test_file_aligns_with_train_when_n_features_is_given():
    frame = read_letor(TEST, n_features=300)
    assert frame.shape == (768, 302)
    assert frame["session_id"].nunique() == 50


@needs_sample
def test_sample_parses_in_well_under_a_second():
    started = time.perf_counter()
    read_letor(TRAIN)
    assert time.perf_counter() - started < 1.0


@needs_sample
def test_training_set_from_sample_files():
    data = letor_training_set(TRAIN, TEST, valid_fraction=0.2, seed=7)
    frame = data.frame
    assert data.source == "letor" and not any(c.startswith("true_") for c in data.frame)
    assert data.feature_columns == [f"f{k}" for k in range(1, 301)]
    assert data.metadata["queries"] == {"train": 161, "valid": 40, "test": 50}
    assert data.metadata["rows"]["test"] == 768
    assert sum(data.metadata["rows"].values()) == 3005 + 768
    assert data.metadata["split_from_train"] == ["valid"]
    # Every query sits in one split, and its rows are contiguous.
    assert (frame.groupby("session_id")["split"].nunique() == 1).all()
    starts = frame["session_id"].ne(frame["session_id"].shift()).cumsum()
    assert starts.max() == frame["session_id"].nunique()
    # item_id numbers the documents of a query from 0.
    first_query = frame[frame["session_id"] == frame["session_id"].iloc[0]]
    assert first_query["item_id"].tolist() == list(range(len(first_query)))


@needs_sample
def test_valid_split_is_deterministic_by_seed():
    def valid_queries(seed: int) -> set:
        return set(letor_training_set(TRAIN, TEST, seed=seed).part("valid")["session_id"])

    assert valid_queries(7) == valid_queries(7)
    assert valid_queries(7) != valid_queries(8)


@needs_sample
def test_test_split_is_taken_from_train_by_whole_queries():
    data = letor_training_set(TRAIN, valid_fraction=0.25, test_fraction=0.2)
    assert data.metadata["queries"] == {"train": 121, "valid": 40, "test": 40}
    assert data.metadata["split_from_train"] == ["valid", "test"]
    assert len(data.frame) == 3005


# ---- tiny files ----
def test_string_qids_stay_strings_and_group_in_order_of_first_appearance(tmp_path):
    path = _write(tmp_path, "2 qid:b 1:1\n0 qid:a 2:5 # doc x\n1 qid:b 3:2\n\n# a comment line\n")
    frame = read_letor(path)
    assert frame["session_id"].tolist() == ["b", "b", "a"]
    assert frame["label"].tolist() == [2, 1, 0]
    assert frame[["f1", "f2", "f3"]].to_numpy().tolist() == [[1, 0, 0], [0, 0, 2], [0, 5, 0]]


def test_explicit_n_features_pads_and_rejects_larger_ids(tmp_path):
    path = _write(tmp_path, "1 qid:1 2:0.5\n")
    assert list(read_letor(path, n_features=4).columns) == [
        "session_id",
        "label",
        "f1",
        "f2",
        "f3",
        "f4",
    ]
    with pytest.raises(ValueError, match=r"tiny.txt, line 1: feature id 2 > n_features=1"):
        read_letor(path, n_features=1)


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ("x qid:1 1:0.5", r"bad grade 'x'"),
        ("-1 qid:1 1:0.5", r"bad grade '-1'"),
        ("1 1:0.5 2:0.1", r"missing qid .*got '1:0.5'"),
        ("1", r"missing qid .*got 'nothing'"),
        ("1 qid:1 0:0.5", r"feature id '0' in '0:0.5' is not a 1-based integer id"),
        ("1 qid:1 1:0.5 2:abc", r"value 'abc' of feature 2 is not a number"),
        ("1 qid:1 1:0.5 1:0.7", r"duplicate feature id 1"),
        ("1 qid:1 1:0.5 3", r"feature '3' is not 'id:value'"),
        ("1 qid:1 1:nan", r"value 'nan' of feature 1 is not a finite number"),
    ],
)
def test_malformed_lines_name_file_line_and_problem(tmp_path, bad_line, problem):
    path = _write(tmp_path, f"0 qid:1 1:0.1 2:0.2\n{bad_line}\n1 qid:2 1:0.3\n")
    with pytest.raises(ValueError, match=rf"tiny\.txt, line 2: {problem}"):
        read_letor(path)


def test_empty_and_missing_files_are_reported(tmp_path):
    with pytest.raises(ValueError, match=r"empty\.txt: no data lines"):
        read_letor(_write(tmp_path, "# only a comment\n\n", "empty.txt"))
    with pytest.raises(FileNotFoundError, match=r"LETOR file not found: .*absent\.txt"):
        read_letor(tmp_path / "absent.txt")


def test_holding_out_needs_a_query_on_each_side(tmp_path):
    path = _write(tmp_path, "1 qid:1 1:1\n0 qid:1 1:2\n")
    with pytest.raises(ValueError, match="cannot hold out fraction 0.2 of 1 queries"):
        letor_training_set(path)


def _fold(folder: Path, qids: dict[str, list[int]]) -> Path:
    """A tiny MSLR fold: 3 documents per query, features 1..3, grade = document rank."""
    folder.mkdir()
    for name, ids in qids.items():
        lines = [f"{g} qid:{q} 1:{q} 2:{g} 3:0.5" for q in ids for g in range(3)]
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


def test_mslr_fold_uses_its_three_files(tmp_path):
    files = {"train.txt": [1, 2, 3], "vali.txt": [4], "test.txt": [5, 6]}
    data = load_mslr_fold(_fold(tmp_path / "Fold1", files))
    assert data.metadata["queries"] == {"train": 3, "valid": 1, "test": 2}
    assert data.metadata["split_from_train"] == []
    assert data.feature_columns == ["f1", "f2", "f3"]
    assert set(data.part("valid")["session_id"]) == {4}
    assert list(data.frame["split"].unique()) == list(SPLITS)


def test_mslr_fold_without_vali_file_is_reported(tmp_path):
    folder = _fold(tmp_path / "Fold1", {"train.txt": [1], "test.txt": [2]})
    with pytest.raises(FileNotFoundError, match=r"lacks \[.*vali\.txt'\]"):
        load_mslr_fold(folder)


def test_qids_shared_between_files_are_prefixed_with_their_split(tmp_path):
    files = {"train.txt": [1, 2], "vali.txt": [1], "test.txt": [2]}
    data = load_mslr_fold(_fold(tmp_path / "Fold1", files))
    assert data.metadata["session_id_prefixed_with_split"] is True
    assert set(data.frame["session_id"]) == {"train:1", "train:2", "valid:1", "test:2"}
