"""Events with claim codes (volunteering sessions, one-off activities)."""
