"""Make `tests.contracts` importable however pytest was started.

pytest puts tests/ (not the repository root) on sys.path because tests/ has no
__init__.py; the contract suites are imported as `tests.contracts.*`, so the
root is added here. A `pythonpath = ["."]` in pyproject would make this moot.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
