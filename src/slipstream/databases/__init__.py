"""databases — slipstream's managed PostgreSQL: an embedded cluster (or an operator's server),
one role + database per blueprint entry, ``pg_dump`` backups with sidecars, restores and drills.

Modules: ``models`` (data, naming rules), ``commands`` (pure argv/config builders), ``sql`` (pure
SQL builders), ``admin`` (admin SQL), ``server`` (embedded cluster lifecycle), ``backups``
(archives, sidecars, restore, drill), ``pitr`` (WAL archive, base backups, recovery to a time),
``tls`` (pure CA and server certificate builders), ``cluster`` (the :class:`Cluster` facade the
engine uses).
"""

from __future__ import annotations

from slipstream.databases.backups import BackupFailed, BackupStore, DrillFailed
from slipstream.databases.cluster import Cluster
from slipstream.databases.models import Backup, DatabaseInfo, DrillReport, Endpoint, derive_identifier

__all__ = [
    "Backup",
    "BackupFailed",
    "BackupStore",
    "Cluster",
    "DatabaseInfo",
    "DrillFailed",
    "DrillReport",
    "Endpoint",
    "derive_identifier",
]
