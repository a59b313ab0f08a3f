"""Rewards: points ledger, earning rules, expiry, fan tiers, coupons, redemption catalogue."""
