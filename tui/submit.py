"""The submit tab: pick a task, fill the form generated from its schema (a concept input
offers the registry's concepts), submit, watch the job's progress live, and save its outputs
to files."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightbox_node.tui.client import NodeClient, NodeError, NodeUnreachable, NotAvailable, Refused
from lightbox_node.tui.form import TaskForm, inputs_from, problems_by_field
from lightbox_node.tui.live import NodeSnapshot, Unavailable
from lightbox_node.tui.models import Job, JobResult, TaskSchema
from lightbox_node.tui.pane import Pane
from lightbox_node.tui.tables import STATE_STYLES, short_id
from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, ProgressBar, Select, Static

POLL_JOB_S = 0.5
EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "application/json": "json",
    "application/octet-stream": "bin",
}


def extension_of(media_type: str) -> str:
    base = media_type.split(";", 1)[0].strip().lower()
    if base in EXTENSIONS:
        return EXTENSIONS[base]
    return "txt" if base.startswith("text/") else "bin"


def save_targets(path_text: str, result: JobResult) -> list[tuple[Path, bytes]]:
    """Where each output goes: into a folder as `<job>-<output>.<ext>`, or to the file named
    (with `-<output>` added before the suffix when there are several outputs)."""
    path = Path(path_text or ".").expanduser()
    outputs = result.outputs
    if path.is_dir() or path_text.endswith(("/", os.sep)) or not path.suffix:
        return [
            (path / f"{result.job_id}-{name}.{extension_of(media)}", data)
            for name, data, media in outputs
        ]
    if len(outputs) == 1:
        return [(path, outputs[0][1])]
    return [(path.with_name(f"{path.stem}-{name}{path.suffix}"), data) for name, data, _ in outputs]


def write_files(targets: list[tuple[Path, bytes]]) -> list[Path]:
    for path, data in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return [path for path, _ in targets]


class SubmitPane(Pane):
    PRIMARY = "#task-select"
    BINDINGS = [  # noqa: RUF012 (Textual reads this class attribute)
        Binding("ctrl+s", "submit", "Submit job"),
        Binding("ctrl+o", "save", "Save result"),
    ]

    def __init__(self, client: NodeClient, clock: Callable[[], float], *, id: str) -> None:
        super().__init__(client, clock, id=id)
        self.tasks: dict[str, TaskSchema] = {}
        self.job: Job | None = None
        self.result: JobResult | None = None
        self.saved: list[Path] = []

    def compose(self) -> Any:
        with Horizontal(id="submit-pickers"):
            yield Select([], prompt="choose a task", id="task-select")
            yield Select([], prompt="any host", id="host-select")
        yield Static("", id="task-description")
        with VerticalScroll(id="form-scroll"):
            yield TaskForm(id="task-form")
        with Horizontal(id="submit-actions"):
            yield Button("Submit", id="submit-job", variant="primary", disabled=True)
            yield Static("", id="submit-problem")
        with Vertical(id="submit-watch"):
            yield Static("No job submitted yet.", id="submit-status")
            yield ProgressBar(total=100, show_eta=False, id="submit-progress")
            with Horizontal(id="save-row"):
                yield Input(".", placeholder="file, or folder to save into", id="save-path")
                yield Button("Save result", id="save-result", disabled=True)
            yield Static("", id="save-status")

    # -- tasks and the form --------------------------------------------------------------------

    def show(self, snapshot: NodeSnapshot, prepared: Any = None) -> None:
        super().show(snapshot)
        registry = snapshot.registry
        if registry is not None and not isinstance(registry, Unavailable):
            self.query_one("#task-form", TaskForm).set_concepts(registry.concepts)
        tasks = snapshot.tasks
        if tasks is None:
            return
        description = self.query_one("#task-description", Static)
        if isinstance(tasks, Unavailable):
            if not self.tasks:
                description.update(tasks.reason)
            return
        offered = {t.name: t for t in tasks}
        if offered == self.tasks:
            return
        self.tasks = offered
        select = self.query_one("#task-select", Select)
        current = select.value
        options = [
            (f"{t.title} ({t.name})" + (" · federated" if t.federated_only else ""), t.name)
            for t in tasks
        ]
        select.set_options(options)
        if current in offered:
            select.value = current
        elif not offered:
            description.update("No GPU host offers a task yet.")

    @on(Select.Changed, "#task-select")
    async def task_chosen(self, event: Select.Changed) -> None:
        event.stop()
        schema = None if event.value is Select.NULL else self.tasks.get(str(event.value))
        await self.choose(schema)

    async def choose(self, schema: TaskSchema | None) -> None:
        form = self.query_one("#task-form", TaskForm)
        if form.schema == schema and schema is not None:
            return
        await form.build(schema)
        description = self.query_one("#task-description", Static)
        hosts = self.query_one("#host-select", Select)
        self.query_one("#submit-job", Button).disabled = schema is None
        self.query_one("#submit-problem", Static).update("")
        if schema is None:
            description.update("")
            hosts.set_options([])
            return
        description.update(f"[b]{schema.title}[/b] — {schema.description}")
        hosts.set_options(
            [
                (f"{short_id(h.peer_id)}" + ("" if h.attached else " (federated)"), h.peer_id)
                for h in schema.hosts
            ]
        )

    # -- submitting ----------------------------------------------------------------------------

    @on(Button.Pressed, "#submit-job")
    def action_submit(self) -> None:
        form = self.query_one("#task-form", TaskForm)
        if form.schema is None:
            self.notify("Choose a task first.", severity="warning")
            return
        host = self.query_one("#host-select", Select).value
        self.submit(form.schema, form.raw_values(), None if host is Select.NULL else str(host))

    @work(exclusive=True, group="submit")
    async def submit(self, schema: TaskSchema, raw: list[Any], host: str | None) -> None:
        form = self.query_one("#task-form", TaskForm)
        problem = self.query_one("#submit-problem", Static)
        inputs, problems = await asyncio.to_thread(inputs_from, raw)
        form.show_problems(problems)
        if problems:
            problem.update(f"Fix {len(problems)} field(s) marked below.")
            return
        if schema.federated_only and host is None:
            problem.update("Only federated hosts run this task: choose a host.")
            return
        problem.update("Submitting…")
        try:
            job = await self.client.submit_job(schema.name, inputs, host=host)
        except Refused as exc:
            form.show_problems(problems_by_field(exc.problems))
            problem.update(f"The node refused the job: {exc}")
            return
        except NodeError as exc:
            problem.update(str(exc))
            return
        problem.update("")
        self.job, self.result, self.saved = job, None, []
        self.query_one("#save-result", Button).disabled = True
        self.query_one("#save-status", Static).update("")
        self.show_job(job)
        self.watch_job(job)

    @work(exclusive=True, group="watch")
    async def watch_job(self, job: Job) -> None:
        """Follow the job over its events WebSocket, else by polling it, until it ends."""
        latest = job
        try:
            async with self.client.job_events(job.job_id, owner=job.owner) as events:
                async for latest in events:
                    self.show_job(latest)
        except (NotAvailable, NodeUnreachable):
            pass  # no WebSocket here, or it broke: poll instead
        except NodeError as exc:
            self.query_one("#submit-status", Static).update(str(exc))
        while not latest.is_final:
            await asyncio.sleep(POLL_JOB_S)
            try:
                latest = await self.client.job(job.job_id, owner=job.owner)
            except NodeUnreachable:
                continue  # the node is restarting; the connection bar says so
            except NodeError as exc:
                self.query_one("#submit-status", Static).update(str(exc))
                return
            self.show_job(latest)
        if latest.state == "done":
            await self.fetch_result(latest)

    def show_job(self, job: Job) -> None:
        self.job = job
        style = STATE_STYLES.get(job.state, "")
        text = f"Job [b]{job.job_id}[/b] ({job.task}): [{style}]{job.state}[/]"
        if job.progress_message:
            text += f" — {job.progress_message}"
        if job.queue_position:
            text += f" — #{job.queue_position} in the queue"
        if job.error and job.state != "done":
            text += f"\n[red]{job.error}[/]"
        self.query_one("#submit-status", Static).update(text)
        self.query_one("#submit-progress", ProgressBar).update(progress=job.progress * 100)

    async def fetch_result(self, job: Job) -> None:
        status = self.query_one("#save-status", Static)
        try:
            self.result = await self.client.job_result(job.job_id, owner=job.owner)
        except NodeError as exc:
            status.update(f"Cannot fetch the result: {exc}")
            return
        parts = []
        for name, data, media in self.result.outputs:
            part = f"{name}: {len(data)} bytes {media.split(';')[0]}"
            if media.startswith("text/") and len(data) <= 200:
                part += f" “{data.decode('utf-8', 'replace')}”"
            parts.append(part)
        status.update("Result ready — " + "; ".join(parts) + ". Save it with Ctrl+O.")
        self.query_one("#save-result", Button).disabled = False

    # -- saving --------------------------------------------------------------------------------

    @on(Button.Pressed, "#save-result")
    @on(Input.Submitted, "#save-path")
    def action_save(self) -> None:
        if self.result is None:
            self.notify("No result to save yet.", severity="warning")
            return
        self.save(self.result, self.query_one("#save-path", Input).value.strip())

    @work(exclusive=True, group="save")
    async def save(self, result: JobResult, path_text: str) -> None:
        status = self.query_one("#save-status", Static)
        try:
            written = await asyncio.to_thread(write_files, save_targets(path_text, result))
        except OSError as exc:
            status.update(f"[red]Cannot save: {exc}[/]")
            return
        self.saved = written
        status.update("Saved " + ", ".join(str(p) for p in written))
        self.notify(f"Saved {len(written)} file(s)")
