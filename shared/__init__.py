"""Common building blocks of the community platform's services.

Settings, database sessions, the CloudEvents envelope and event contracts, the
transactional outbox and its relay, the idempotent consumer, auth, errors and
observability. Services import from here; they never import each other.
"""
