"""Gossip: capability records, their epidemic spread, liveness and peer scores.

Everything in this package is a pure core (no trio, no sockets): `handle(event, now)`
in, actions out. The trio shell that runs it over peer links lives in `node`.
"""
