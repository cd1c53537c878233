"""The registered model: any fitted ``Ranker`` wrapped as an MLflow pyfunc.

Why a pyfunc and not ``mlflow.pytorch.log_model``: in MLflow 3 the latter stores a
``torch.export`` program that takes tensors. The pyfunc keeps the contract serving needs:
a DataFrame of feature columns in, one score per row out, with the preprocessing (held
inside the ranker) travelling with the weights. The same wrapper serves the baselines, so
every model in the registry is loaded and called the same way.

Input: one row per (session, candidate item): ``session_id`` plus the ranker's feature
columns. The session key is part of the contract because listwise rankers score an item
relative to the other items of its session (serving passes one request as one session).

The wrapper is logged as code (``models/pyfunc_model.py``, MLflow's "models from code"):
MLflow stores that file, not a pickled wrapper object. The fitted ranker is stored as a
pickle artifact beside the MLmodel file and unpickled in ``load_context`` (for MLflow's
users: the gate, notebooks, ``mlflow models serve``). A ``ListwiseRanker`` is also stored in
a form that runs no code when read: its weights as ``safetensors`` and its preprocessing and
shape as JSON (``SAFE_WEIGHTS``, ``SAFE_PREPROCESSING``). The service reads only those
(``load_safe_ranker``): unpickling runs whatever code the file holds, and the service must
not run code from an artifact. Pickle refers to classes by import path, so the process that
loads the model must be able to import the installed ranklab packages (``models``,
``features``, ``ranklab``): the same virtual environment as training. Serving, the gate and the
notebooks all run in that venv; MLflow's captured pip requirements are a record, not what
makes loading work.
"""

from __future__ import annotations

import json
import pickle
import tempfile
import warnings
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.models import ModelSignature, infer_signature
from mlflow.models.model import ModelInfo

if TYPE_CHECKING:  # torch loads only where a ranker is exported or rebuilt
    from models.ranker import ListwiseRanker

from models.base import Ranker, require_features
from ranklab.schema import SESSION_ID

RANKER_ARTIFACT = "ranker"  # key of the pickled ranker in the pyfunc's artifacts
SAFE_WEIGHTS = "serving_weights"  # key of the network's weights (safetensors)
SAFE_PREPROCESSING = "serving_preprocessing"  # key of the scaler, columns and shape (JSON)
SAFE_FORMAT_VERSION = 1
MODEL_NAME = "model"  # the logged model's name inside its run

# Recorded in the MLmodel so a reader sees what the model was built with. Listing them
# also spares MLflow from inferring requirements, which loads the model in a subprocess.
_REQUIREMENTS = ("mlflow", "numpy", "pandas", "scikit-learn", "torch")
MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")  # the file MLflow stores and runs


class RankerModel(mlflow.pyfunc.PythonModel):
    """Scores a feature frame with the fitted ranker stored in the ``ranker`` artifact."""

    def __init__(self) -> None:
        # Filled by load_context from the ranker artifact: the wrapper itself holds nothing.
        self.input_columns: list[str] = []
        self.ranker_: Ranker | None = None

    @classmethod
    def around(cls, ranker: Ranker) -> RankerModel:
        """A wrapper already holding ``ranker``, as load_context leaves it (in-process use)."""
        model = cls()
        model._hold(ranker)
        return model

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        with open(context.artifacts[RANKER_ARTIFACT], "rb") as file:
            self._hold(pickle.load(file))

    def _hold(self, ranker: Ranker) -> None:
        self.ranker_ = ranker
        self.input_columns = input_columns(ranker.feature_columns)

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, object] | None = None,
    ) -> np.ndarray:
        """One score per row of ``model_input`` (higher means shown earlier).

        The ``pd.DataFrame`` hint tells MLflow not to derive a schema from the type: the
        signature logged with the model (the feature columns) is what it enforces.
        """
        if not isinstance(model_input, pd.DataFrame):
            raise TypeError(
                f"ranker pyfunc: expected a pandas DataFrame, got {type(model_input).__name__}"
            )
        require_features(model_input, self.input_columns, who="ranker pyfunc")
        ranker = self._loaded()
        return np.asarray(ranker.predict(model_input[self.input_columns]), dtype=float)

    def predict_session(self, features: np.ndarray) -> np.ndarray:
        """One score per row of ``features``: ONE session's items, [n, F], F in the ranker's
        ``feature_columns`` order (the signature's order without ``session_id``).

        The serving path (``serving/champion.py``; a request is one session). It is not part
        of MLflow's contract: ``predict`` stays the reference, and the scores are equal. A
        ranker with its own single-session path (``ListwiseRanker.predict_session``) skips the
        DataFrame; any other gets the one-session frame ``predict`` would be given.
        """
        ranker = self._loaded()
        own_path = getattr(ranker, "predict_session", None)
        if own_path is not None:
            return np.asarray(own_path(features), dtype=float)
        frame = pd.DataFrame(np.asarray(features, dtype=float), columns=self.input_columns[1:])
        frame.insert(0, SESSION_ID, np.zeros(len(frame), dtype=np.int64))
        return np.asarray(ranker.predict(frame), dtype=float)

    def _loaded(self) -> Ranker:
        if self.ranker_ is None:
            raise RuntimeError("ranker pyfunc: load it with mlflow.pyfunc.load_model first")
        return self.ranker_


def input_columns(feature_columns: list[str]) -> list[str]:
    """The pyfunc's input columns: the session key, then the features in training order."""
    return [SESSION_ID, *[c for c in feature_columns if c != SESSION_ID]]


def as_model_input(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``columns`` of ``frame`` as the model takes them: the session key as it is, every
    feature as float64.

    Floats because a feature missing at serving time (an item the online store has not seen)
    arrives as NaN, which an integer column cannot hold, and MLflow refuses to convert int64
    to float64 on its own. The rankers compute in floats anyway.
    """
    features = [c for c in columns if c != SESSION_ID]
    return frame[columns].astype({c: "float64" for c in features}).reset_index(drop=True)


def log_ranker(
    ranker: Ranker, example_frame: pd.DataFrame, registered_model_name: str | None = None
) -> ModelInfo:
    """Log ``ranker`` as a pyfunc in the active run and register it under a model name.

    ``example_frame`` (a few rows of the training frame) gives the signature and the input
    example; the signature's inputs are ``session_id`` and the ranker's feature columns.
    """
    columns = input_columns(ranker.feature_columns)
    require_features(example_frame, columns, who=f"log_ranker({ranker.name})")
    example = as_model_input(example_frame, columns)
    with tempfile.TemporaryDirectory(prefix="ranklab-pyfunc-") as tmp:
        artifacts = {RANKER_ARTIFACT: str(_pickle_ranker(ranker, Path(tmp) / "ranker.pkl"))}
        if _is_listwise(ranker):
            artifacts.update(export_safe_ranker(ranker, Path(tmp)))
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(MODEL_CODE),  # models from code: no pickled wrapper
            artifacts=artifacts,
            signature=ranker_signature(ranker, example),
            input_example=example,
            registered_model_name=registered_model_name,
            pip_requirements=_pinned_requirements(),
        )


def score(
    model: mlflow.pyfunc.PyFuncModel, frame: pd.DataFrame, who: str = "ranker model"
) -> np.ndarray:
    """Score ``frame`` with a loaded model: the signature's columns, features as float64.

    Frames from the training set carry more than the inputs (labels, slice columns);
    selecting the signature's columns first gives a clear error naming any missing column
    and spares MLflow's "extra inputs will be ignored" warning on every call.
    """
    columns = model.metadata.get_input_schema().input_names()
    require_features(frame, columns, who=who)
    return np.asarray(model.predict(as_model_input(frame, columns)), dtype=float)


def ranker_signature(ranker: Ranker, example: pd.DataFrame) -> ModelSignature:
    """Inputs: the example's columns and dtypes; output: one float score per row."""
    scores = np.asarray(ranker.predict(example), dtype=float)
    with warnings.catch_warnings():
        # The hint is about integer features that may be missing; the only integer input
        # left is the session key, which never is.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        return infer_signature(example, scores)


# ---- the code-free form serving reads -------------------------------------------------------


def export_safe_ranker(ranker: ListwiseRanker, folder: Path) -> dict[str, str]:
    """Write the ranker's weights (safetensors) and preprocessing (JSON) into ``folder``;
    returns them as pyfunc artifacts."""
    from safetensors.torch import save_file

    weights = Path(folder) / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in ranker.network_.state_dict().items()}, weights)
    scaler = ranker.scaler_
    preprocessing = {
        "format": SAFE_FORMAT_VERSION,
        "name": ranker.name,
        "feature_columns": list(ranker.feature_columns),
        "config": {**asdict(ranker.config), "hidden": list(ranker.config.hidden)},
        "scaler": {
            "log_columns": [bool(v) for v in scaler.log_columns_],
            "mean": [float(v) for v in scaler.mean_],  # repr round-trips float64 exactly
            "std": [float(v) for v in scaler.std_],
        },
    }
    path = Path(folder) / "preprocessing.json"
    path.write_text(json.dumps(preprocessing, indent=1), encoding="utf-8")
    return {SAFE_WEIGHTS: str(weights), SAFE_PREPROCESSING: str(path)}


def load_safe_ranker(model_folder: Path) -> ListwiseRanker | None:
    """The ranker of a logged model folder rebuilt from its safetensors weights and JSON
    preprocessing, without unpickling anything; None when the model has no such form (a
    baseline, or a model logged before it existed). Reads ``MLmodel`` as plain YAML."""
    from safetensors.torch import load_file

    from models.ranker import FeatureScaler, ItemScorer, ListwiseRanker, RankerConfig

    mlmodel = yaml.safe_load((Path(model_folder) / "MLmodel").read_text(encoding="utf-8"))
    artifacts = mlmodel.get("flavors", {}).get("python_function", {}).get("artifacts", {})
    if SAFE_WEIGHTS not in artifacts or SAFE_PREPROCESSING not in artifacts:
        return None
    spec = json.loads((Path(model_folder) / artifacts[SAFE_PREPROCESSING]["path"]).read_text())
    if spec.get("format") != SAFE_FORMAT_VERSION:
        raise ValueError(f"{model_folder}: safe ranker format {spec.get('format')!r} unknown")
    config = RankerConfig(**{**spec["config"], "hidden": tuple(spec["config"]["hidden"])})
    ranker = ListwiseRanker(list(spec["feature_columns"]), config, spec["name"], progress=False)
    ranker.scaler_ = FeatureScaler(
        log_columns_=np.asarray(spec["scaler"]["log_columns"], dtype=bool),
        mean_=np.asarray(spec["scaler"]["mean"], dtype=np.float64),
        std_=np.asarray(spec["scaler"]["std"], dtype=np.float64),
    )
    n_inputs = len(ranker.feature_columns) * (2 if config.session_relative else 1)
    network = ItemScorer(n_inputs, config.hidden, config.dropout)
    network.load_state_dict(load_file(Path(model_folder) / artifacts[SAFE_WEIGHTS]["path"]))
    ranker.network_ = network.eval()
    return ranker


def _is_listwise(ranker: Ranker) -> bool:
    from models.ranker import ListwiseRanker

    return isinstance(ranker, ListwiseRanker)


def _pickle_ranker(ranker: Ranker, path: Path) -> Path:
    with open(path, "wb") as file:
        pickle.dump(ranker, file, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def _pinned_requirements() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in _REQUIREMENTS]
