"""Many devices, one edge server: the fleet's shared band and server cycles divided exactly
(docs/theory.md §7, docs/fleet.md)."""
