"""`python -m artbandit` runs the command, as the installed `artbandit` script does."""

import sys

from artbandit.cli import main

sys.exit(main())
