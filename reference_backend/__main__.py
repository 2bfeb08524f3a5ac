import os
import sys

# Before torch loads libgomp: idle OpenMP threads sleep instead of spinning. On a shared, busy CPU spinning
# threads starve everyone (decode steps measured 5-20x slower with the default policy under load).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ollama_conformance.reference_backend.cli import main

sys.exit(main())
