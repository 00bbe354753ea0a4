"""The durable result store (one SQLite file in the run's --out directory), in parts: schema.py
(tables, connection, damage), verdict.py (StoredVerdict), writes.py (staged batches), reads.py
(counts and rows), store.py (Store: opening, moving aside, closing)."""

from engine.store.schema import DAMAGE, DB_NAME
from engine.store.store import FLAGGED, HEARTBEAT_S, Store, read_heartbeat
from engine.store.verdict import StoredVerdict

__all__ = ["DAMAGE", "DB_NAME", "FLAGGED", "HEARTBEAT_S", "Store", "StoredVerdict", "read_heartbeat"]
