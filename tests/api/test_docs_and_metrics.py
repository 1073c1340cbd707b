"""The OpenAPI document matches the routes; docs page, metrics and health check."""

from __future__ import annotations

import re

from starlette.routing import Route

from lightbox_node.api import NodeStatus, create_app
from lightbox_node.api.openapi import OPERATIONS
from tests.api.conftest import User
from tests.api.harness import FakeNetwork, wait_final


def test_every_http_route_is_in_the_openapi_document_and_back():
    app = create_app(lambda: NodeStatus("x", "n", (), "0", 0.0, 0.0), FakeNetwork())
    served = set()
    for route in app.routes:
        if isinstance(route, Route) and not route.path.startswith("/api/{rest"):
            for method in route.methods or ():
                if method != "HEAD":
                    path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", route.path)
                    served.add((method, path))
    documented = {(op.method, op.path) for op in OPERATIONS}
    docs_routes = {("GET", "/api/v1/openapi.json"), ("GET", "/api/v1/docs")}
    assert served - docs_routes == documented


def test_the_openapi_document_and_the_docs_page_are_served(client):
    document = client.get("/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert "/api/v1/jobs" in document["paths"]
    assert document["paths"]["/api/v1/admin/users"]["get"]["security"] == [{"bearer": []}]
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and "openapi.json" in page.text
    assert "cdn" not in page.text.lower()


def test_healthz_answers(client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["queue"] is True


def test_metrics_are_prometheus_text_with_queues_latency_peers_and_trust(client, user: User):
    job = client.post("/api/v1/jobs", json={"task": "noop"}, headers=user.headers).json()
    wait_final(client, job["job_id"], user.token)
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    for family in (
        "lightbox_queue_depth",
        "lightbox_job_latency_seconds_bucket",
        "lightbox_peers",
        "lightbox_users_by_trust",
        'lightbox_jobs{state="done"}',
        "lightbox_http_responses_total",
        "lightbox_accounts",
    ):
        assert family in text, family
    count = re.search(r"^lightbox_job_latency_seconds_count (\d+)", text, re.M)
    assert count and int(count.group(1)) >= 1
    assert user.name not in text  # counts only, no names
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(r"[a-z_]+(\{[^}]*\})? [-+0-9.eInf]+", line), (
            line
        )


def test_unknown_api_paths_are_json_404s(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
