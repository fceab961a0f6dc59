"""`python -m watcher` runs the CLI."""

import sys

from watcher.cli import main

sys.exit(main())
