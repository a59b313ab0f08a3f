"""Event contracts, one module per producing service. Importing this package registers them all."""

from shared.events.contracts import members

__all__ = ["members"]
