import sys

from ollama_conformance.cli import main

sys.exit(main())
