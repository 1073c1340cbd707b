"""The database schema's history: every migration, in the order it is applied.

To change the schema, append a `Migration` with the next version number; never edit or
reorder one that has shipped, since databases in the field have already applied it.
"""

from __future__ import annotations

from lightbox_node.accounts.store import create_accounts_tables
from lightbox_node.gossip.peer_policy import create_peer_policy_table
from lightbox_node.raft.storage import create_raft_tables
from lightbox_node.store.journal import create_jobs_tables, create_trust_table
from lightbox_node.store.migrations import Migration
from lightbox_node.store.node_meta import create_node_meta_table

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create node_meta", create_node_meta_table),
    Migration(2, "create peer_policy", create_peer_policy_table),
    Migration(3, "create jobs", create_jobs_tables),
    Migration(4, "create trust", create_trust_table),
    Migration(5, "create accounts, api_tokens, pow_spent", create_accounts_tables),
    Migration(6, "create raft", create_raft_tables),
)

LATEST_SCHEMA_VERSION = len(MIGRATIONS)
