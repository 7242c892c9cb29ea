"""``python -m scalevae ...`` (and ``torchrun -m scalevae ...``): the command line."""

import sys

from .cli import main

sys.exit(main())
