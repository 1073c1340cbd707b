"""HTTP API for people and tools: an ASGI app served by hypercorn inside the node's trio loop."""

from lightbox_node.api.app import NodeStatus, create_app
from lightbox_node.api.server import serve_http
from lightbox_node.api.settings import ApiSettings

__all__ = ["ApiSettings", "NodeStatus", "create_app", "serve_http"]
