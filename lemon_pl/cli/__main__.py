import sys

from lemon_pl.cli import main

sys.exit(main())
