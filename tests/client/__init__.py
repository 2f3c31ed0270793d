"""Tests of the client Lambda (``lambda_fn/``) against a local S3 and the real model server.

``lambda_fn/`` is the Lambda's zip, whose modules import each other flat
(``import records``), so it goes on ``sys.path`` here; bytecode writing is off
so that no ``__pycache__`` lands in the zip's folder.
"""

import sys
from pathlib import Path

LAMBDA_DIR = Path(__file__).resolve().parents[2] / "lambda_fn"
sys.dont_write_bytecode = True
if str(LAMBDA_DIR) not in sys.path:
    sys.path.insert(0, str(LAMBDA_DIR))
