"""Makes `import zoo` work when an entry point runs from a checkout that was not pip-installed
(e.g. `mlflow run` with a conda env built from conda.yaml, which lists dependencies only)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
