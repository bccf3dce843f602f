"""The SQL store's tables, all on one metadata: import them from here.

``base`` holds what every table shares (``Base``, the column lengths, the row-id type);
each other module declares its tables on that ``Base`` and imports nothing else of the
package: ``store`` the per-message summary store and the compliance records, ``hunts``
the DLP retro-hunts, ``notifications`` the notification outbox, ``releases`` the
quarantine releases. Importing this package declares every table, so ``Base.metadata``
is complete for migrations and tests. The modules that read and write the tables
(``compliance.summaries``, ``compliance.dlp_hunts``, ...) import them from here; nothing
here imports them back.
"""

from __future__ import annotations

from compliance.models.accounts import WebAccount
from compliance.models.activity import ConsoleActivity
from compliance.models.base import (
    ADDRESS_LEN,
    CRYPTO_LEN,
    DETAIL_LEN,
    DOMAIN_LEN,
    EXTENSION_LEN,
    FILENAME_LEN,
    MATTER_LEN,
    NAMING,
    SUBJECT_LEN,
    TYPE_LEN,
    Base,
    RowId,
)
from compliance.models.hunts import DlpHunt, DlpHuntFinding
from compliance.models.notifications import Notification
from compliance.models.releases import QuarantineRelease, ReleaseRequest
from compliance.models.store import (
    ChainHead,
    ConsumerPosition,
    Deletion,
    DlpFinding,
    Export,
    ExportItem,
    Finding,
    Hold,
    HoldItem,
    Message,
    Part,
    QuarantineEntry,
    QueueFailure,
    Recipient,
)

__all__ = [
    "ADDRESS_LEN",
    "CRYPTO_LEN",
    "DETAIL_LEN",
    "DOMAIN_LEN",
    "EXTENSION_LEN",
    "FILENAME_LEN",
    "MATTER_LEN",
    "NAMING",
    "SUBJECT_LEN",
    "TYPE_LEN",
    "Base",
    "ChainHead",
    "ConsoleActivity",
    "ConsumerPosition",
    "Deletion",
    "DlpFinding",
    "DlpHunt",
    "DlpHuntFinding",
    "Export",
    "ExportItem",
    "Finding",
    "Hold",
    "HoldItem",
    "Message",
    "Notification",
    "Part",
    "QuarantineEntry",
    "QuarantineRelease",
    "QueueFailure",
    "Recipient",
    "ReleaseRequest",
    "RowId",
    "WebAccount",
]
