"""``python -m stgnn`` runs the ``stgnn`` command."""

import sys

from stgnn.cli import main

sys.exit(main())
