"""Real models (torch): load, split into device and server parts, profile."""
