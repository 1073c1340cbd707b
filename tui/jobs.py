"""The queues and jobs tab: each host's queue depth, a live job table filtered by state and
user, cancelling a job, draining or resuming a host."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from lightbox_node.tui.client import NodeClient, NodeError
from lightbox_node.tui.dialogs import ConfirmScreen
from lightbox_node.tui.live import JobFilter, NodeSnapshot, Unavailable
from lightbox_node.tui.messages import JobFilterChanged
from lightbox_node.tui.models import JOB_STATES, Host, Job
from lightbox_node.tui.pane import Pane, set_title, show_text
from lightbox_node.tui.tables import (
    STATE_STYLES,
    Cell,
    Column,
    KeyedTable,
    TableBatch,
    age,
    bar,
    cell,
    number,
    short_id,
)
from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Input, Select, Static

QUEUE_COLUMNS = (
    Column("host", "Host", 16),
    Column("state", "State", 9),
    Column("depth", "Queued", 7),
    Column("running", "In flight", 9),
    Column("cost", "Queued cost", 11),
)
JOB_COLUMNS = (
    Column("job", "Job", 26),
    Column("owner", "Owner", 12),
    Column("task", "Task", 12),
    Column("priority", "Priority", 8),
    Column("state", "State", 10),
    Column("progress", "Progress", 15),
    Column("age", "Age", 5),
    Column("host", "Host", 16),
)


def merge_jobs(snapshot: NodeSnapshot) -> list[Job]:
    """The job list, plus queued jobs of anyone from the host queues (with priorities)."""
    jobs: dict[str, Job] = {}
    if not isinstance(snapshot.jobs, Unavailable):
        jobs = {job.job_id: job for job in snapshot.jobs.jobs}
    if not isinstance(snapshot.queues, Unavailable):
        queued = [(host, q) for host, qs in snapshot.queues.queues.items() for q in qs]
        queued += [(None, q) for q in snapshot.queues.unplaced]
        for host, q in queued:
            known = jobs.get(q.job_id)
            if known is not None:
                if known.priority is None and q.priority is not None:
                    jobs[q.job_id] = _with_priority(known, q.priority)
                continue
            jobs[q.job_id] = Job(
                job_id=q.job_id,
                owner=q.owner,
                task=q.task,
                state="queued",
                host=host,
                submitted_at=q.submitted_at,
                priority=q.priority,
            )
    return list(jobs.values())


def _with_priority(job: Job, priority: float) -> Job:
    return replace(job, priority=priority)


@dataclass(frozen=True, slots=True)
class PreparedJobs:
    """The jobs tab's tables' next batches, worked out for `job_filter` off the screen."""

    job_filter: JobFilter
    jobs: TableBatch[Job]
    queues: TableBatch[Host]


def filtered(jobs: Iterable[Job], job_filter: JobFilter) -> list[Job]:
    return [
        j
        for j in jobs
        if (job_filter.state is None or j.state == job_filter.state)
        and (job_filter.user is None or j.owner == job_filter.user)
    ]


def render_job(job: Job, now: float) -> list[Cell]:
    style = STATE_STYLES.get(job.state, "")
    waited = None if job.submitted_at is None else now - job.submitted_at
    if job.state == "queued" and job.queue_position:
        progress = cell(f"#{job.queue_position} in queue", "yellow", sort=-1.0)
    else:
        progress = cell(bar(job.progress), style, sort=job.progress)
    return [
        cell(job.job_id, sort=job.job_id),
        cell(job.owner),
        cell(job.task),
        cell(number(job.priority), sort=job.priority),
        cell(job.state, style),
        progress,
        cell(age(waited), sort=job.submitted_at),
        cell(short_id(job.host), sort=job.host),
    ]


class JobsPane(Pane):
    PRIMARY = "#jobs-table"
    BINDINGS = [  # noqa: RUF012 (Textual reads this class attribute)
        Binding("c", "cancel_job", "Cancel job"),
        Binding("f", "filter", "Filter"),
        Binding("d", "drain", "Drain host"),
        Binding("u", "resume", "Resume host"),
    ]

    def __init__(self, client: NodeClient, clock: Callable[[], float], *, id: str) -> None:
        super().__init__(client, clock, id=id)
        self.job_filter = JobFilter()
        self.now = clock()
        self.queues_table = KeyedTable(
            QUEUE_COLUMNS, render_queue, sort_column="host", id="queues-table"
        )
        self.jobs_table = KeyedTable(
            JOB_COLUMNS, self.render_job, sort_column="age", reverse=True, id="jobs-table"
        )

    def compose(self) -> Any:
        with Horizontal(id="job-filters"):
            yield Select(
                [(state, state) for state in JOB_STATES],
                prompt="any state",
                id="state-filter",
            )
            yield Input(placeholder="filter by user (Enter)", id="user-filter")
            yield Static("", id="jobs-scope", classes="note")
        yield self.queues_table
        yield self.jobs_table

    def render_job(self, job: Job) -> list[Cell]:
        return render_job(job, self.now)

    # -- showing -------------------------------------------------------------------------------

    def prepare(self, snapshot: NodeSnapshot) -> PreparedJobs:
        job_filter = self.job_filter
        jobs = filtered(merge_jobs(snapshot), job_filter)
        return PreparedJobs(
            job_filter,
            self.plan_jobs(jobs, snapshot.at),
            self.queues_table.plan(queue_rows(snapshot)),
        )

    def show(self, snapshot: NodeSnapshot, prepared: Any = None) -> None:
        super().show(snapshot)
        self.now = snapshot.at
        if not isinstance(prepared, PreparedJobs) or prepared.job_filter != self.job_filter:
            prepared = self.prepare(snapshot)
        scope = self.query_one("#jobs-scope", Static)
        if isinstance(snapshot.jobs, Unavailable):
            show_text(scope, snapshot.jobs.reason)
        elif not snapshot.jobs.node_wide:
            show_text(scope, snapshot.jobs.scope + "; queued jobs of everyone from the host queues")
        else:
            show_text(scope, "all jobs on this node")
        hosts = snapshot.hosts
        set_title(
            self.queues_table, hosts.reason if isinstance(hosts, Unavailable) else "Host queues"
        )
        self.queues_table.commit(prepared.queues)
        self.jobs_table.commit(prepared.jobs)

    def plan_jobs(self, jobs: list[Job], now: float) -> TableBatch[Job]:
        """The job table's next batch; a job's age is part of its signature, as its row
        shows it."""
        rows = (
            (j.job_id, (j, age(None if j.submitted_at is None else now - j.submitted_at)), j)
            for j in jobs
        )
        return self.jobs_table.plan(rows, lambda job: render_job(job, now))

    # -- filtering -----------------------------------------------------------------------------

    @on(Select.Changed, "#state-filter")
    def state_chosen(self, event: Select.Changed) -> None:
        event.stop()
        state = None if event.value is Select.NULL else str(event.value)
        self.set_filter(JobFilter(state, self.job_filter.user))

    @on(Input.Submitted, "#user-filter")
    def user_entered(self, event: Input.Submitted) -> None:
        event.stop()
        self.set_filter(JobFilter(self.job_filter.state, event.value.strip() or None))
        self.query_one("#jobs-table").focus()

    def set_filter(self, job_filter: JobFilter) -> None:
        if job_filter == self.job_filter:
            return
        self.job_filter = job_filter
        self.post_message(JobFilterChanged(job_filter))
        if self.snapshot is not None:
            jobs = filtered(merge_jobs(self.snapshot), job_filter)
            self.jobs_table.commit(self.plan_jobs(jobs, self.now))

    def action_filter(self) -> None:
        self.query_one("#user-filter", Input).focus()

    # -- cancelling, draining ------------------------------------------------------------------

    def selected_job(self) -> Job | None:
        key = self.query_one("#jobs-table", KeyedTable).cursor_key
        if key is None or self.snapshot is None:
            return None
        return next((j for j in merge_jobs(self.snapshot) if j.job_id == key), None)

    def action_cancel_job(self) -> None:
        job = self.selected_job()
        if job is None:
            self.notify("Select a job to cancel first.", severity="warning")
            return
        if job.is_final:
            self.notify(f"{job.job_id} is already {job.state}.", severity="warning")
            return
        question = f"Cancel {job.job_id} ({job.task} for {job.owner}, {job.state})?"

        def answered(yes: bool | None) -> None:
            if yes:
                self.cancel_job(job)

        self.app.push_screen(ConfirmScreen(question, "Cancel job"), answered)

    @work(group="job-actions")
    async def cancel_job(self, job: Job) -> None:
        try:
            after = await self.client.cancel_job(job.job_id, owner=job.owner)
        except NodeError as exc:
            self.report(exc)
            return
        self.notify(f"{after.job_id}: {after.state}")
        self.refresh_node()

    def _selected_host(self) -> str | None:
        return self.query_one("#queues-table", KeyedTable).cursor_key

    def action_drain(self) -> None:
        if host := self._selected_host():
            self.change_host(host, drain=True)

    def action_resume(self) -> None:
        if host := self._selected_host():
            self.change_host(host, drain=False)

    @work(group="host-actions")
    async def change_host(self, peer_id: str, *, drain: bool) -> None:
        try:
            if drain:
                await self.client.drain_host(peer_id)
            else:
                await self.client.resume_host(peer_id)
        except NodeError as exc:
            self.report(exc)
            return
        self.notify(f"{short_id(peer_id)}: {'draining' if drain else 'resumed'}")
        self.refresh_node()


def queue_rows(snapshot: NodeSnapshot) -> list[tuple[str, Host, Host]]:
    hosts = snapshot.hosts
    return [] if isinstance(hosts, Unavailable) else [(h.peer_id, h, h) for h in hosts]


def render_queue(host: Any) -> list[Cell]:
    if not host.online:
        state = cell("offline", "red")
    elif host.draining:
        state = cell("draining", "yellow")
    else:
        state = cell("online", "green")
    return [
        cell(short_id(host.peer_id), sort=host.peer_id),
        state,
        cell(str(host.queued), sort=host.queued),
        cell(str(len(host.in_flight)), sort=len(host.in_flight)),
        cell(number(host.queued_cost), sort=host.queued_cost),
    ]
