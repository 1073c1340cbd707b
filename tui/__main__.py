"""`python -m lightbox_node.tui`: the dashboard without the `lightbox-node` command."""

import sys

from lightbox_node.tui.cli import main

sys.exit(main())
