"""Members: profiles, communities, roles, segments, referrals, tiers, privacy."""
