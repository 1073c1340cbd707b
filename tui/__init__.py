"""The Textual terminal dashboard of a Lightbox node, a client of the node's HTTP API.

Public: `DashboardApp` (the app), `NodeClient` (the only code that talks to the node), and
`add_dashboard_parser` / `run_dashboard` for the `lightbox-node dashboard` command.
"""

from lightbox_node.tui.cli import add_dashboard_parser, run_dashboard

__all__ = ["DashboardApp", "NodeClient", "add_dashboard_parser", "run_dashboard"]


def __getattr__(name: str) -> object:
    # The app pulls in Textual; importing the package for the CLI's parser should not.
    if name == "DashboardApp":
        from lightbox_node.tui.app import DashboardApp

        return DashboardApp
    if name == "NodeClient":
        from lightbox_node.tui.client import NodeClient

        return NodeClient
    raise AttributeError(name)
