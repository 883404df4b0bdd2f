"""Distortion laws and rate–distortion bounds (numpy/scipy only; no torch)."""
