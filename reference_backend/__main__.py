import sys

from reference_backend.cli import main

sys.exit(main())
