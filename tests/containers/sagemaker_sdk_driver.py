"""Calls an endpoint through the SageMaker Python SDK, as its users do; run by .venv-sdk's Python.

    python sagemaker_sdk_driver.py RUNTIME_URL ENDPOINT_NAME FEATURES_CSV

Prints one JSON object: for every serializer x deserializer pair, and for the SDK's own
SKLearnPredictor and PyTorchPredictor with their defaults, the labels the SDK returned (or
the error it raised), so the test can compare them with the model's.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import Any

import boto3
import numpy as np
from sagemaker import deserializers, serializers
from sagemaker.predictor import Predictor
from sagemaker.pytorch.model import PyTorchPredictor
from sagemaker.session import Session
from sagemaker.sklearn.model import SKLearnPredictor

# What each serializer is given, as its users give it.
SERIALIZERS = {
    "CSVSerializer(list of lists)": (serializers.CSVSerializer, list),
    "JSONSerializer(list of lists)": (serializers.JSONSerializer, list),
    "JSONSerializer(numpy array)": (serializers.JSONSerializer, np.array),
    "JSONLinesSerializer(list of lists)": (serializers.JSONLinesSerializer, list),
    "NumpySerializer(numpy array)": (serializers.NumpySerializer, np.array),
}
DESERIALIZERS = {
    "CSVDeserializer": deserializers.CSVDeserializer,
    "JSONDeserializer": deserializers.JSONDeserializer,
    "JSONLinesDeserializer": deserializers.JSONLinesDeserializer,
    "NumpyDeserializer": deserializers.NumpyDeserializer,
    "StringDeserializer": deserializers.StringDeserializer,
    "BytesDeserializer": deserializers.BytesDeserializer,
}


def labels(answer: Any) -> list[str]:
    """The labels, whatever shape the deserializer gave them."""
    if isinstance(answer, bytes):  # BytesDeserializer: the body in whatever type it came
        if answer.startswith(b"\x93NUMPY"):
            answer = np.load(io.BytesIO(answer), allow_pickle=False)
        else:
            answer = answer.decode()
    if isinstance(answer, str):
        answer = _text(answer)
    if isinstance(answer, np.ndarray):
        return [str(label) for label in answer.tolist()]
    if isinstance(answer, dict):
        return [str(p["label"]) for p in answer["predictions"]]
    return [str(item["label"]) if isinstance(item, dict) else str(item[0]) for item in answer]


def _text(text: str) -> Any:
    """A JSON document, JSON Lines, or CSV rows."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return [json.loads(line) for line in text.splitlines()]
    except json.JSONDecodeError:
        return list(csv.reader(io.StringIO(text)))


def main() -> None:
    url, endpoint, features_csv = sys.argv[1:4]
    boto_session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    session = Session(
        boto_session=boto_session,
        sagemaker_runtime_client=boto_session.client("sagemaker-runtime", endpoint_url=url),
    )
    with open(features_csv, newline="") as handle:
        rows = [[float(cell) for cell in row] for row in list(csv.reader(handle))[1:]]
    results: dict[str, Any] = {}
    for s_name, (serializer, shape) in SERIALIZERS.items():
        for d_name, deserializer in DESERIALIZERS.items():
            predictor = Predictor(
                endpoint,
                sagemaker_session=session,
                serializer=serializer(),
                deserializer=deserializer(),
            )
            results[f"{s_name} x {d_name}"] = call(predictor, shape(rows))
    for predictor_class in (SKLearnPredictor, PyTorchPredictor):
        predictor = predictor_class(endpoint, sagemaker_session=session)
        results[f"{predictor_class.__name__} (its defaults)"] = call(predictor, np.array(rows))
    print(json.dumps(results))


def call(predictor: Predictor, data: Any) -> dict[str, Any]:
    try:
        return {"labels": labels(predictor.predict(data))}
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}


if __name__ == "__main__":
    main()
