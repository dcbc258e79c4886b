"""Actions: how verified positive actions enter the scheme and earn points."""
