"""Row producers by sweep kind (design, fading, robust, bound), one module each, registered in
`registry`; importing this package registers them all."""

from laimco.experiments.sweep.producers import bound, design, fading, robust
from laimco.experiments.sweep.producers.registry import (
    Producer,
    kinds,
    producer_for,
    register,
    run_chunk,
)

__all__ = ["Producer", "bound", "design", "fading", "kinds", "producer_for", "register",
           "robust", "run_chunk"]
