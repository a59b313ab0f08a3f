"""Content: posts of every kind, content calendar, interactions, moderation, PII masking."""
