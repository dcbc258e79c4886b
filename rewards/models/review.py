"""Self-reported actions and the review queue."""
