"""The compressed uplink: quantization and lossless coding of the activation that crosses the
split (docs/theory.md §6)."""
