import sys

from halospec_tui.cli import main

sys.exit(main())
