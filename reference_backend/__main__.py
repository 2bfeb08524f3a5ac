import sys

from ollama_conformance.reference_backend.cli import main

sys.exit(main())
