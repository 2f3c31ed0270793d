"""Tests of the client Lambda (``lambda_fn/``) against a local S3 and the real model server.

``lambda_fn/`` is the Lambda's zip, whose modules import each other flat (``import
errors``), as Lambda's runtime puts the function's folder on the path: pytest's
``pythonpath`` (pyproject.toml) does the same for the tests.
"""
