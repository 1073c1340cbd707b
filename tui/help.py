"""The help screen: every key and what each tab shows."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# Lightbox dashboard

A live view of one Lightbox node through its HTTP API. The bar under the title says whether
the node answers; when it does not, the dashboard retries with a growing delay and shows the
countdown.

## Everywhere

| Key | Does |
|---|---|
| `1` … `7` | open a tab (or click its title) |
| `r` | refresh now |
| `?`, `F1` | this help (`Escape` closes it) |
| `q`, `Ctrl+Q` | quit |
| `Tab`, `Shift+Tab` | move between widgets |

The mouse works throughout: click tabs, rows, column headers (to sort), buttons and fields.

## Tabs

1. **Overview** — the node's id, roles, uptime and version; counts of peers, GPU hosts,
   queued, running and finished jobs; sparklines of jobs per minute and p50 latency.
2. **Peers** — every known peer: roles, address, score, last seen, link. Click a header or
   press `s` to sort; `Enter` or a click shows the peer's capability record and score
   components.
3. **GPU hosts** — each host's slots, current job with progress, faults and tasks; the
   selected host's task schemas below. `d` drains a host, `u` resumes it.
4. **Jobs** — queue depth per host and the live job table. `c` cancels the selected job,
   `f` filters by user (the selector filters by state), `d`/`u` drain or resume the host
   selected in the queue table.
5. **Trust** — users with trust, time to full trust, suspension. Click a user (or press
   `Enter` on one) or type a name; `s` suspends (with the reason typed), `o` restores,
   `t` sets the trust typed; the buttons do the same.
6. **Registry** — Raft members, the global model of each concept, recent commits.
7. **Submit** — choose a task; its form is generated from the task's schema. `Ctrl+S`
   submits, the progress bar follows the job, `Ctrl+O` (or `Enter` in the path field)
   saves its outputs to the file or folder typed.

Administrative actions need the node's operator token (`DATA_DIR/api.token`) or an
administrator's token. Where the node lacks an endpoint, the tab says
"not available on this node (HTTP 404)" and the rest keeps working.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [  # noqa: RUF012 (Textual reads this class attribute)
        Binding("escape,q,question_mark,f1", "close", "Close help"),
    ]

    def compose(self) -> Any:
        with VerticalScroll(id="help-body"):
            yield Markdown(HELP, id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
