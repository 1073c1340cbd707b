"""`python -m lightbox_node.sim`: the `lightbox-node simulate` command on its own."""

import sys

from lightbox_node.sim.cli import main

sys.exit(main())
