"""``python -m megq`` runs the demo (``python -m megq --help`` for the other commands)."""
import sys

from .cli import main

sys.exit(main())
