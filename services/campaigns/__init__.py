"""Campaigns: referral, check-in, UGC contest, lottery, quiz, flash sale, group buy, trials."""
