"""Rules of each campaign type, one module per type."""
