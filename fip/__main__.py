"""``python -m fip`` runs the command line."""

import sys

from fip.cli import main

sys.exit(main())
