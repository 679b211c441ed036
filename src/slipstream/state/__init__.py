"""Durable state: one SQLite file (WAL, synchronous=FULL); every deploy transition is one transaction."""

from slipstream.state.store import DeployRecord, InstanceRecord, ServiceRecord, Store

__all__ = ["DeployRecord", "InstanceRecord", "ServiceRecord", "Store"]
