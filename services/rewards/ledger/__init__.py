"""The points ledger: postings, scheduled maintenance, statements and audit."""

from services.rewards.ledger.audit import LedgerReader
from services.rewards.ledger.postings import Balance, Credit, Ledger, Posting
from services.rewards.ledger.schedule import LedgerSchedule

__all__ = ["Balance", "Credit", "Ledger", "LedgerReader", "LedgerSchedule", "Posting"]
