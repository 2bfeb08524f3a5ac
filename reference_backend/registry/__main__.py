import sys

from ollama_conformance.reference_backend.registry.cli import main

sys.exit(main())
