"""Donations of points to charity partners."""
