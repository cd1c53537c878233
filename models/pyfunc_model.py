"""The model file MLflow stores with every registered ranker ("models from code").

``mlflow.pyfunc.log_model(python_model=<this file>)`` copies this file into the model's
folder; loading the model runs it, and ``set_model`` names the object to serve. The wrapper
holds no state of its own: ``RankerModel.load_context`` reads the fitted ranker from the
model's ``ranker`` artifact. So nothing of the wrapper is pickled by MLflow (no
CloudPickle of a Python object, which MLflow warns about), and the loading process must
import the installed ranklab packages, as before.
"""

import mlflow

from models.pyfunc import RankerModel

mlflow.models.set_model(RankerModel())
