"""Tests of the client Lambda (``lambda_fn/``) against a local S3 and the real model server.

``lambda_fn/`` is the Lambda's zip, whose modules import each other flat
(``import records``), so it goes on ``sys.path`` here. Its modules are imported
once, with bytecode writing off, so that no ``__pycache__`` lands in the zip's
folder; later imports find them in ``sys.modules``.
"""

import importlib
import sys
from pathlib import Path

LAMBDA_DIR = Path(__file__).resolve().parents[2] / "lambda_fn"
if str(LAMBDA_DIR) not in sys.path:
    sys.path.insert(0, str(LAMBDA_DIR))
_writes_bytecode = sys.dont_write_bytecode
sys.dont_write_bytecode = True
try:
    for _module in sorted(LAMBDA_DIR.glob("*.py")):
        importlib.import_module(_module.stem)
finally:
    sys.dont_write_bytecode = _writes_bytecode
