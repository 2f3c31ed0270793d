"""The classic container's flask app: ``pandas.read_csv`` in, ``DataFrame.to_csv`` out.

Written from the public description of the classic "bring your own container"
example, so the benchmark compares our server with what users copy today: the
model is loaded lazily by each worker (``/ping`` triggers it), every request is
parsed by pandas and answered by pandas. Only the model differs from the
example: it is the same LightGBM model directory our server loads, read with
``model_kit.load_model``, so both servers run the same predictions.
"""

from __future__ import annotations

import io

import flask
import pandas as pd
from model_kit.model_io import Model, load_model
from model_kit.paths import MLPaths


class ScoringService:
    """Holds the model once a worker has loaded it (the classic lazy singleton)."""

    model: Model | None = None

    @classmethod
    def get_model(cls) -> Model:
        if cls.model is None:
            cls.model = load_model(MLPaths.from_env().model_dir)
        return cls.model

    @classmethod
    def predict(cls, data: pd.DataFrame) -> list[str | int]:
        model = cls.get_model()
        return model.predict_labels(model.predict_proba(data.to_numpy(dtype=float)))


app = flask.Flask(__name__)


@app.route("/ping", methods=["GET"])
def ping() -> flask.Response:
    """Healthy once this worker could load the model."""
    health = ScoringService.get_model() is not None
    return flask.Response(response="\n", status=200 if health else 404, mimetype="application/json")


@app.route("/invocations", methods=["POST"])
def transformation() -> flask.Response:
    """CSV records in, one predicted label per line out."""
    if flask.request.content_type != "text/csv":
        return flask.Response(
            response="This predictor only supports CSV data", status=415, mimetype="text/plain"
        )
    data = pd.read_csv(io.StringIO(flask.request.data.decode("utf-8")), header=None)
    print(f"Invoked with {data.shape[0]} records")
    predictions = ScoringService.predict(data)
    out = io.StringIO()
    pd.DataFrame({"results": predictions}).to_csv(out, header=False, index=False)
    return flask.Response(response=out.getvalue(), status=200, mimetype="text/csv")
