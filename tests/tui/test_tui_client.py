"""`NodeClient`: every answer becomes a typed value, and every failure one `NodeError`."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest
from lightbox_node.tui.client import (
    NodeClient,
    NodeUnreachable,
    NotAvailable,
    Refused,
    parse_metrics,
)

from tests.tui.fake_node import ADAPTER_A, ANSWERS, MODEL, NODE, NOW, PEER_A, fake_node


def client_with(**options: object) -> tuple[NodeClient, list[httpx.Request]]:
    transport, seen = fake_node(**options)  # type: ignore[arg-type]
    return NodeClient("http://node.test", "secret", "alice", transport=transport), seen


def test_answers_become_typed_values_and_requests_carry_the_token() -> None:
    async def scenario() -> None:
        client, seen = client_with()
        status = await client.status()
        assert status.peer_id == NODE and status.roles == ("queue", "gpu")
        peers = await client.peers()
        assert peers[0].peer_id == PEER_A
        assert peers[0].record is not None and peers[0].record.task_names == ("txt2img", "upscale")
        assert peers[0].last_seen == pytest.approx(1_800_000_000.0 - 5)
        (task,) = await client.tasks()
        assert [i.type for i in task.inputs] == [
            "text",
            "integer",
            "number",
            "boolean",
            "choice",
            "seed",
            "image",
        ]
        assert task.inputs[1].minimum == 1 and task.inputs[1].maximum == 150
        hosts = await client.hosts()
        assert hosts[0].in_flight == ("j-000000000000000000000001",)
        jobs = await client.jobs()
        assert jobs.node_wide and len(jobs.jobs) == 4
        users = await client.users()
        assert [(u.username, u.suspended, u.role) for u in users] == [
            ("alice", False, "admin"),
            ("bob", True, None),
        ]
        registry = await client.registry()
        assert registry.members[0].leader and registry.commits[0].index == 17
        assert seen[0].headers["authorization"] == "Bearer secret"
        assert seen[0].headers["x-lightbox-user"] == "alice"
        await client.aclose()

    asyncio.run(scenario())


def test_a_concept_and_its_history_become_typed_values() -> None:
    async def scenario() -> None:
        client, seen = client_with()
        (concept,) = (await client.registry()).concepts
        assert (concept.concept, concept.version, concept.pending_count) == ("my-dog", 1, 1)
        detail = await client.concept("my-dog")
        assert (detail.model_id, detail.version, detail.pending_count) == (MODEL, 1, 1)
        assert detail.history_length == 4 and detail.metadata == {"title": "My dog"}
        events = await client.concept_history("my-dog", after=2, limit=10)
        assert dict(seen[-1].url.params) == {"after": "2", "limit": "10"}
        assert [(e.seq, e.kind) for e in events] == [
            (1, "adapter"),
            (2, "merge"),
            (3, "metadata"),
            (4, "adapter"),
        ]
        adapter, merge, metadata, _ = events
        assert (adapter.adapter, adapter.weight, adapter.by) == (ADAPTER_A, 4, PEER_A)
        assert (merge.model_id, merge.version, merge.adapters) == (MODEL, 1, (ADAPTER_A,))
        assert merge.at == pytest.approx(NOW - 7190), "milliseconds become seconds"
        assert metadata.metadata == (("title", "My dog"),)
        await client.concept_history("my-dog")
        assert dict(seen[-1].url.params) == {}, "the node's own page size"
        await client.aclose()

    asyncio.run(scenario())


def test_a_missing_endpoint_is_not_available_with_its_status() -> None:
    async def scenario() -> None:
        client, _ = client_with(missing=("/api/v1/registry",))
        with pytest.raises(NotAvailable, match=r"not available on this node \(HTTP 404\)"):
            await client.registry()

    asyncio.run(scenario())


def test_without_a_node_wide_job_list_the_users_own_jobs_are_listed() -> None:
    own = {"jobs": [ANSWERS["/api/v1/admin/jobs"]["jobs"][0]]}

    async def scenario() -> None:
        client, seen = client_with(missing=("/api/v1/admin/jobs",), answers={"/api/v1/jobs": own})
        jobs = await client.jobs(user="carol")
        assert not jobs.node_wide and "jobs of carol only" in jobs.scope
        assert seen[-1].url.path == "/api/v1/jobs"
        assert seen[-1].headers["x-lightbox-user"] == "carol"

    asyncio.run(scenario())


def test_cancel_falls_back_to_acting_as_the_owner() -> None:
    cancelled = {**ANSWERS["/api/v1/admin/jobs"]["jobs"][0], "state": "cancelled"}
    path = "/api/v1/jobs/j-1/cancel"

    async def scenario() -> None:
        client, seen = client_with(answers={path: cancelled})
        job = await client.cancel_job("j-1", owner="bob")
        assert job.state == "cancelled"
        assert [r.url.path for r in seen] == ["/api/v1/admin/jobs/j-1/cancel", path]
        assert seen[-1].headers["x-lightbox-user"] == "bob"

    asyncio.run(scenario())


def test_a_refusal_carries_the_nodes_explanation_and_problems() -> None:
    body = {
        "error": "invalid_inputs",
        "detail": "steps: must be at most 150",
        "problems": [{"field": "steps", "message": "must be at most 150"}],
    }
    refusal = httpx.Response(422, content=json.dumps(body).encode())

    async def scenario() -> None:
        client, _ = client_with(answers={"/api/v1/jobs": refusal})
        with pytest.raises(Refused) as caught:
            await client.submit_job("txt2img", {"steps": 900})
        assert caught.value.status == 422 and caught.value.code == "invalid_inputs"
        assert caught.value.problems == body["problems"]
        assert "must be at most 150" in str(caught.value)

    asyncio.run(scenario())


def test_a_node_that_is_down_is_unreachable_quickly() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there

    async def scenario() -> None:
        async with NodeClient(f"http://127.0.0.1:{port}", timeout_s=2) as client:
            with pytest.raises(NodeUnreachable, match="cannot reach"):
                await client.status()
            with pytest.raises(NodeUnreachable):
                async with client.node_events():
                    pass

    asyncio.run(scenario())


def test_a_slow_node_times_out_instead_of_hanging() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(10)

    async def scenario() -> None:
        server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, NodeClient(f"http://127.0.0.1:{port}", timeout_s=0.3) as client:
            started = asyncio.get_running_loop().time()
            with pytest.raises(NodeUnreachable, match=r"did not answer within 0\.3 s"):
                await client.status()
            with pytest.raises(NodeUnreachable, match="no handshake within"):
                async with client.node_events():
                    pass
            assert asyncio.get_running_loop().time() - started < 3

    asyncio.run(scenario())


def test_prometheus_text_is_parsed_with_labels() -> None:
    samples = parse_metrics(
        '# HELP x\nlightbox_jobs{state="done"} 3\nlightbox_up 1\n'
        'weird{a="x,y",b="\\"q\\""} 2.5\nbroken line\n'
    )
    assert samples.value("lightbox_jobs", state="done") == 3
    assert samples.value("lightbox_up") == 1
    assert samples.value("weird", a="x,y", b='"q"') == 2.5
