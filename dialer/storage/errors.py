"""The one exception tree of `dialer/storage/`.

SQLAlchemy's and the drivers' errors that a caller can act on are translated into these at the
boundary; anything else (a bug, a lost server mid-query) propagates unchanged.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error raised by `dialer/storage/`."""


class DatabaseUnavailable(StorageError):
    """The database could not be reached or refused the connection."""


class NotFound(StorageError, LookupError):
    """The order, call attempt or outbox row asked for does not exist."""


class OrderExists(StorageError):
    """An order with this CRM and external id is already stored; `order_id` is the stored one."""

    def __init__(self, *, crm: str, external_id: str, order_id: int) -> None:
        super().__init__(f"order {external_id!r} from {crm!r} is already stored as #{order_id}")
        self.crm = crm
        self.external_id = external_id
        self.order_id = order_id


class LiveAttemptExists(StorageError):
    """The order already has a call attempt that has not ended; nothing was written."""

    def __init__(self, *, order_id: int, channel_id: str) -> None:
        super().__init__(f"order #{order_id} is already being called on channel {channel_id}")
        self.order_id = order_id
        self.channel_id = channel_id


class ChannelIdInUse(StorageError):
    """A call attempt with this ChannelId already exists; ChannelIds are never reused."""


class OrderClosed(StorageError):
    """The order has a final status (confirmed, rejected, ...) and is not called again."""

    def __init__(self, *, order_id: int, status: str) -> None:
        super().__init__(f"order #{order_id} is {status}; it is not called again")
        self.order_id = order_id
        self.status = status


class DispositionExists(StorageError):
    """An outcome for this call (ChannelId) is already stored; nothing was written."""
