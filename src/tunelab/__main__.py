"""``python -m tunelab`` runs the CLI."""

import sys

from tunelab.cli.main import main

sys.exit(main())
