"""Experiments: analyses, sweeps, figures and reports that drive the rest of laimco."""
