"""Analytics: incremental rollups of every domain event, metrics for operators."""
