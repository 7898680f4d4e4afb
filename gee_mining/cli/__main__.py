"""`python -m gee_mining.cli`: the `gee-mining` command."""

import sys

from gee_mining.cli.main import main

sys.exit(main())
