"""The simulated network: queue servers, GPU hosts and users as steps in virtual time.

One `run_setup` call simulates one network (a number of queue servers, each with its own
users and GPU hosts) under one policy on a `VirtualClock` (`lightbox_node.sim.clock`):
whenever nothing is left to do at the current instant, the clock jumps to the next timer,
as trio's `MockClock(autojump_threshold=0)` does, so an hour of use takes as long as the
work it causes. (The simulation ran as trio tasks under that clock; a step on the virtual
clock costs a heap operation where a trio task paid a task switch and a cancel scope, and
gives the same results to the bit.)

What is real and what is simulated:

* Each queue server runs the real scheduler core (`lightbox_node.sched.Scheduler`, built
  by the policy) and carries out its actions as `QueueService` does: `Dispatch` to a host,
  `CancelOnHost`, `JobChanged`, and `tick` at the scheduler's next deadline. The journal,
  the HTTP edge and the task schemas are left out (they do not decide anything).
* A GPU host has a worker per slot taking the pushed jobs in order, each "running" one for
  `task_time_s` of virtual time; a cancel stops the run, as on a real host.
* Federation follows `lightbox_node.dispatch.federation`: a remote host is attached to a
  server's scheduler as a `pinned_only` host whose port forwards the push over the link to
  the host's own server, which submits it as a federated job (owner and trust account
  ``peer:<forwarding server>``, `federated_from` set, the federated priority with the
  forwarding server's peer score) and replies with the outcome; a refusal there comes back
  as a fault. Links between servers deliver after `link_latency_s`, in order.
* A user waits a random start offset, submits, waits for the outcome (or gets refused at
  once), sleeps a uniform think time, and repeats until the end.

Randomness comes only from the seed: every user has its own `random.Random` stream, drawn
the same number of times per request, so every policy sees the same users with the same
initial trust, targets and think times. Event times are continuous random reals, so no two
events that touch shared state fall on the same instant and the order of steps within an
instant cannot change the outcome; the requests are also sorted by a key that does not
depend on it.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

from lightbox_node.identity import PeerId
from lightbox_node.sched.jobs import Job, JobError, JobSpec, JobState
from lightbox_node.sched.scheduler import CancelOnHost, Dispatch, JobChanged, Scheduler
from lightbox_node.sim.clock import Timer, VirtualClock
from lightbox_node.sim.config import SimConfig
from lightbox_node.sim.policies import Policy

TASK = "sim"
"""The one task every simulated GPU host offers."""

SERVED, REFUSED, FAILED, UNFINISHED = "served", "refused", "failed", "unfinished"
OUTCOMES = (SERVED, REFUSED, FAILED, UNFINISHED)
"""served: done; refused: turned away at submit; failed: accepted but ended faulted, expired
or cancelled (e.g. refused by the remote server three times); unfinished: still open at the
end of the run."""

Progress = Callable[[float], None]
"""Called with the fraction of virtual time done (0..1) as a run goes."""


@dataclass(slots=True)
class Request:
    """One request of one user, and what became of it (a row of the CSV)."""

    server: int
    user: int
    seq: int
    """The user's n-th request (from 0)."""
    trust: float
    """The user's trust on their own server just before submitting."""
    target: int
    """The server whose GPU host runs it (== `server` for a local request)."""
    submitted_at: float
    started_at: float | None = None
    """When a GPU host began the attempt that served it."""
    finished_at: float | None = None
    outcome: str = UNFINISHED
    reason: str = ""
    resume: Callable[[], None] | None = None
    """The user's next step once the outcome is known (None after a refusal at submit)."""

    @property
    def federated(self) -> bool:
        return self.target != self.server

    @property
    def response_time(self) -> float | None:
        """Submit to outcome, as the user saw it (0 for a refusal at submit)."""
        return None if self.finished_at is None else self.finished_at - self.submitted_at

    @property
    def queue_wait(self) -> float | None:
        """Submit to the start of the run that served it."""
        if self.outcome != SERVED or self.started_at is None:
            return None
        return self.started_at - self.submitted_at

    def sort_key(self) -> tuple[float, int, int, int]:
        return (self.submitted_at, self.server, self.user, self.seq)


@dataclass(frozen=True, slots=True)
class SetupResult:
    """Every request of one simulated network under one policy."""

    policy: str
    servers: int
    users: int
    """Users per server."""
    hosts: int
    """GPU hosts per server."""
    requests: list[Request]
    counters: list[dict[str, int]]
    """Each server's scheduler counters at the end."""
    wall_s: float
    virtual_s: float


def _peer(label: str) -> PeerId:
    return PeerId(hashlib.sha256(label.encode()).digest())


class _Link:
    """One direction of a link between two queue servers: in order, after a fixed latency."""

    def __init__(self, clock: VirtualClock, latency: float) -> None:
        self.clock = clock
        self.latency = latency

    def send(self, deliver: Callable, *args: object) -> None:
        # Timers due at one time run in the order they were set: in order, as on the link.
        self.clock.at(self.clock.now + self.latency, deliver, *args)


class _Host:
    """A simulated GPU host: `slots` workers taking pushed jobs in order."""

    def __init__(self, server: _Server, peer: PeerId, slots: int, task_time: float) -> None:
        self.server = server
        self.clock = server.net.clock
        self.peer = peer
        self.task_time = task_time
        self._idle = slots
        """Workers waiting for a job (they are all alike, so a count will do)."""
        self._waiting: deque[tuple[str, int]] = deque()
        self._cancelled: set[tuple[str, int]] = set()
        self._running: dict[tuple[str, int], Timer] = {}

    def push(self, job_id: str, attempt: int) -> None:
        key = (job_id, attempt)
        if self._idle:
            self._idle -= 1
            self.clock.soon(self._take, key)  # a waiting worker wakes up to it
        else:
            self._waiting.append(key)

    def cancel(self, job_id: str, attempt: int) -> None:
        key = (job_id, attempt)
        run = self._running.get(key)
        if run is None:
            self._cancelled.add(key)
        elif not run.cancelled:
            run.cancel()
            self.clock.soon(self._stopped, key)  # its worker wakes up to the cancel

    def _take(self, key: tuple[str, int]) -> None:
        """A worker got `key`: skip it if it was cancelled meanwhile, else run it."""
        if key in self._cancelled:
            self._cancelled.discard(key)
            self.clock.soon(self._next)
            return
        job_id, attempt = key
        self.server.host_started(self.peer, job_id, attempt)
        clock = self.clock
        self._running[key] = clock.at(clock.now + self.task_time, self._finish, key)

    def _finish(self, key: tuple[str, int]) -> None:
        del self._running[key]
        job_id, attempt = key
        self.server.host_done(self.peer, job_id, attempt)
        self._next()

    def _stopped(self, key: tuple[str, int]) -> None:
        del self._running[key]
        self._next()

    def _next(self) -> None:
        """A worker is free: it takes the next waiting job at once, or waits for one."""
        if self._waiting:
            self._take(self._waiting.popleft())
        else:
            self._idle += 1


class _Server:
    """A simulated queue server: the real scheduler core and a shell that carries it out."""

    def __init__(self, net: _Network, index: int, scheduler: Scheduler) -> None:
        self.net = net
        self.index = index
        self.peer = _peer(f"server-{index}")
        self.account = f"peer:{self.peer}"
        """The trust account this server's forwarded jobs are charged to elsewhere."""
        self.scheduler = scheduler
        self.hosts: dict[PeerId, _Host] = {}
        self.links: dict[int, _Link] = {}
        """Outgoing links, by the index of the server at the other end."""
        self._serving: dict[str, tuple[_Server, str, int]] = {}
        """Our job id -> (origin server, its job id, its attempt) for jobs run for others."""
        self._served_ids: dict[tuple[int, str], str] = {}
        """(origin index, its job id) -> our job id, to find a job the origin cancels."""

    @property
    def now(self) -> float:
        return self.net.clock.now

    # -- users --------------------------------------------------------------------------

    def submit(
        self, request: Request, user: str, host: PeerId | None, resume: Callable[[], None]
    ) -> None:
        """Submit a user's request; refused at once, or answered later: then `resume`."""
        now = request.submitted_at
        spec = JobSpec(
            job_id=self.net.new_job_id(),
            owner=user,
            origin=self.peer,
            task=TASK,
            inputs={},
            cost=self.net.job_cost,
            submitted_at=now,
            host=host,
        )
        try:
            actions = self.scheduler.submit(spec, now)
        except JobError as exc:
            request.outcome, request.finished_at = REFUSED, now
            request.reason = type(exc).__name__
            return
        request.resume = resume
        self.net.by_job[spec.job_id] = request
        self.apply(actions)

    # -- hosts --------------------------------------------------------------------------

    def host_started(self, host: PeerId, job_id: str, attempt: int) -> None:
        actions = self.scheduler.job_started(job_id, host, attempt, self.now)
        if actions:
            job = actions[0].job
            key = job.spec.remote_job_id if job.spec.federated_from else job_id
            request = self.net.by_job.get(key)
            if request is not None:
                request.started_at = self.now
        self.apply(actions)

    def host_done(self, host: PeerId, job_id: str, attempt: int) -> None:
        self.apply(self.scheduler.job_done(job_id, host, attempt, [], self.now))

    # -- federation: the serving side ---------------------------------------------------

    def federated_submit(self, origin: _Server, job_id: str, attempt: int, host: PeerId) -> None:
        """A forwarded push from `origin` (`fsubmit`): run it here as a federated job."""
        spec = JobSpec(
            job_id=self.net.new_job_id(),
            owner=origin.account,
            origin=self.peer,
            task=TASK,
            inputs={},
            cost=self.net.job_cost,
            submitted_at=self.now,
            host=host,
            federated_from=origin.peer,
            remote_job_id=job_id,
        )
        score = self.net.config.peer_score if self.net.policy.peer_score_aware else 0.0
        try:
            actions = self.scheduler.submit(spec, self.now, peer_score=score)
        except JobError as exc:
            reason = f"refused by server {self.index}: {type(exc).__name__}"
            self.links[origin.index].send(origin.federated_reply, host, job_id, attempt, reason)
            return
        self._serving[spec.job_id] = (origin, job_id, attempt)
        self._served_ids[(origin.index, job_id)] = spec.job_id
        self.apply(actions)

    def federated_cancel(self, origin: _Server, job_id: str) -> None:
        """`fcancel` from the server that forwarded the job."""
        ours = self._served_ids.get((origin.index, job_id))
        if ours is not None:
            self.apply(self.scheduler.cancel(ours, self.now))

    # -- federation: the origin side ----------------------------------------------------

    def federated_reply(self, host: PeerId, job_id: str, attempt: int, fault: str | None) -> None:
        """The serving server's answer for a job we forwarded: done, or a fault."""
        if fault is None:
            self.apply(self.scheduler.job_done(job_id, host, attempt, [], self.now))
        else:
            self.apply(self.scheduler.job_faulted(job_id, host, attempt, fault, self.now))

    # -- carrying out the scheduler's actions -------------------------------------------

    def apply(self, actions: list) -> None:
        for action in actions:
            kind = type(action)
            if kind is JobChanged:
                if action.job.state.is_final:
                    self._finished(action.job)
            elif kind is Dispatch:
                job_id, attempt = action.job.job_id, action.attempt.number
                host = self.hosts.get(action.host)
                if host is not None:
                    host.push(job_id, attempt)
                else:
                    serving = self.net.server_of[action.host]
                    self.links[serving.index].send(
                        serving.federated_submit, self, job_id, attempt, action.host
                    )
            elif kind is CancelOnHost:
                host = self.hosts.get(action.host)
                if host is not None:
                    host.cancel(action.job_id, action.attempt_number)
                else:
                    serving = self.net.server_of[action.host]
                    self.links[serving.index].send(serving.federated_cancel, self, action.job_id)

    def _finished(self, job: Job) -> None:
        job_id = job.job_id
        served = self._serving.pop(job_id, None)
        if served is not None:
            origin, their_id, attempt = served
            del self._served_ids[(origin.index, their_id)]
            fault = None
            if job.state is not JobState.DONE:
                fault = job.error or f"the job was {job.state.value} on server {self.index}"
            host = job.spec.host
            self.links[origin.index].send(origin.federated_reply, host, their_id, attempt, fault)
            return
        request = self.net.by_job.pop(job_id, None)
        if request is None or request.outcome != UNFINISHED:
            return
        request.outcome = SERVED if job.state is JobState.DONE else FAILED
        request.finished_at = self.now
        if request.outcome != SERVED:
            # The last fault says why ("refused by server 2: TrustExhausted", a deadline...).
            last = job.faults[-1].split(": ", 1)[-1] if job.faults else job.error or ""
            request.reason = f"{job.state.value}: {last}"[:100]
        assert request.resume is not None
        request.resume()

    def start_ticker(self) -> None:
        """`tick` at the scheduler's next deadline, as the queue service's ticker does."""
        # A deadline is always at least deadline_base_s after the dispatch that sets it (and a
        # queue timeout longer still), so waking at least that often never misses one and
        # `apply` need not wake the ticker on every action as the queue service does.
        deadline = self.scheduler.next_deadline()
        longest = self.scheduler.params.deadline_base_s
        wait = longest if deadline is None else min(longest, deadline - self.now)
        clock = self.net.clock
        if wait > 0.0:
            clock.at(clock.now + wait, self._ticker_wakes)
        else:
            clock.soon(self._ticker_wakes)

    def _ticker_wakes(self) -> None:
        deadline = self.scheduler.next_deadline()
        if deadline is not None and deadline <= self.now:
            self.apply(self.scheduler.tick(self.now))
        self.start_ticker()


@dataclass(slots=True)
class _User:
    """One user's random stream and where they are in their loop of requests."""

    server: _Server
    index: int
    name: str
    rng: random.Random
    seq: int = 0
    think: float = 0.0


class _Network:
    def __init__(self, config: SimConfig, policy: Policy, servers: int, users: int) -> None:
        self.config = config
        self.policy = policy
        self.clock = VirtualClock()
        self.job_cost = policy.job_cost
        self.hosts_per_server = config.hosts_for(users)
        self.users_per_server = users
        self.by_job: dict[str, Request] = {}
        self.requests: list[Request] = []
        self._next_id = 0
        self.servers = [_Server(self, i, policy.new_scheduler()) for i in range(servers)]
        self.server_of: dict[PeerId, _Server] = {}
        for server in self.servers:
            for k in range(self.hosts_per_server):
                peer = _peer(f"host-{server.index}-{k}")
                server.hosts[peer] = _Host(server, peer, config.host_slots, config.task_time_s)
                self.server_of[peer] = server
        for server in self.servers:
            for other in self.servers:
                if other is not server:
                    server.links[other.index] = _Link(self.clock, config.link_latency_s)
        # Every server knows every host at the start: its own, and (through gossip and
        # `Federation.ensure_host`) the others' as pinned-only hosts reached via their server.
        for server in self.servers:
            for peer, host in self.server_of.items():
                remote = host is not server
                server.scheduler.host_available(
                    peer, (TASK,), config.host_slots, 0.0, pinned_only=remote
                )
        self.host_peers = [list(s.hosts) for s in self.servers]

    def new_job_id(self) -> str:
        self._next_id += 1
        return f"j-{self._next_id:024x}"

    def run(self, progress: Progress | None) -> None:
        config, clock = self.config, self.clock
        for server in self.servers:
            server.start_ticker()
            for u in range(self.users_per_server):
                self._start_user(server, u)
        if progress is not None:
            steps = 100
            for step in range(1, steps + 1):
                clock.run_until(config.duration_s * step / steps)
                progress(step / steps)
        else:
            clock.run_until(config.duration_s)

    def _start_user(self, server: _Server, u: int) -> None:
        config = self.config
        stream = f"{config.seed}/{len(self.servers)}/{self.users_per_server}/{server.index}/{u}"
        rng = random.Random(stream)
        user = _User(server, u, f"user-{u}", rng)
        initial = rng.uniform(config.trust_min, config.trust_max)
        if initial >= config.trust_max > config.trust_min:
            initial = config.trust_min  # [min, max): uniform() may round up to max
        server.scheduler.ledger.set_trust(user.name, initial, 0.0)
        self._sleep(user, rng.uniform(0.0, config.sleep_max_s))

    def _sleep(self, user: _User, seconds: float) -> None:
        clock = self.clock
        if seconds > 0.0:
            clock.at(clock.now + seconds, self._submit, user)
        else:
            clock.soon(self._submit, user)

    def _submit(self, user: _User) -> None:
        """The user's next request; then they think, once it is answered."""
        config, server, rng = self.config, user.server, user.rng
        others = len(self.servers) - 1
        # Four draws per request whatever is used, so every policy sees the same stream.
        go_remote, pick_server, pick_host = rng.random(), rng.random(), rng.random()
        user.think = rng.uniform(config.sleep_min_s, config.sleep_max_s)
        target, host = server.index, None
        if others and go_remote < config.federated_share:
            target = int(pick_server * others)
            target += target >= server.index
            peers = self.host_peers[target]
            host = peers[int(pick_host * len(peers))]
        elif config.pin_local:
            peers = self.host_peers[target]
            host = peers[int(pick_host * len(peers))]
        now = self.clock.now
        trust = self.policy.trust_at_submit(server.scheduler, user.name, now)
        request = Request(server.index, user.index, user.seq, trust, target, now)
        self.requests.append(request)
        server.submit(request, user.name, host, partial(self._thought, user))
        if request.resume is None:  # refused at once
            self._thought(user)

    def _thought(self, user: _User) -> None:
        user.seq += 1
        self._sleep(user, user.think)


@contextlib.contextmanager
def _few_collections() -> Iterator[None]:
    """Collect cyclic garbage rarely while a run builds up its many long-lived objects.

    Every job, attempt and request lives to the end of the run, so the default thresholds
    would walk an ever larger heap again and again for almost nothing (a fifth of the time).
    """
    thresholds = gc.get_threshold()
    gc.freeze()  # what exists already is not this run's to walk (nor to collect)
    gc.set_threshold(200_000, 50, 50)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def run_setup(
    config: SimConfig,
    policy: str,
    servers: int,
    users: int,
    progress: Progress | None = None,
) -> SetupResult:
    """Simulate `servers` queue servers with `users` users each under `policy`."""
    network = _Network(config, Policy(policy, config), servers, users)
    started = time.perf_counter()
    with _few_collections():
        network.run(progress)
        wall = time.perf_counter() - started
        requests = sorted(network.requests, key=Request.sort_key)
    return SetupResult(
        policy=policy,
        servers=servers,
        users=users,
        hosts=network.hosts_per_server,
        requests=requests,
        counters=[s.scheduler.counters for s in network.servers],
        wall_s=wall,
        virtual_s=config.duration_s,
    )


__all__ = ["OUTCOMES", "TASK", "Request", "SetupResult", "run_setup"]
