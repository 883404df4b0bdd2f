"""laimco: pruning-aware co-inference of large AI models over wireless edge networks."""

__version__ = "0.1.0"
