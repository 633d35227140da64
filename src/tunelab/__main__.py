"""``python -m tunelab`` runs the CLI."""

import sys

from tunelab.cli.main import console_main

sys.exit(console_main())
