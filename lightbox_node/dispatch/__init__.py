"""Dispatch: the trio shell that moves jobs between queue nodes and GPU hosts.

`queue.QueueService` runs the scheduler core on a queue node (journal, watchers, results);
`host.GpuHost` runs tasks on a GPU host; both speak the "jobs" protocol of `protocol`
over peer links, or over an in-process pair when one node has both roles. `client.JobClient`
is the Python API people and tools use (the HTTP API, the dashboard and the tests).
"""
