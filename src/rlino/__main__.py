import sys

from rlino.cli import main

sys.exit(main())
