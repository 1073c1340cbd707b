"""HTTP API for people and tools: an ASGI app served by hypercorn inside the node's trio loop."""

from lightbox_node.api.app import NodeStatus, create_app
from lightbox_node.api.server import serve_http

__all__ = ["NodeStatus", "create_app", "serve_http"]
