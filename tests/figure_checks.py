"""What the figure tests can check without re-deriving a plot: the files open and show something.

This is a smoke check, named as one: it does not compare the drawn data with the tables behind
it (the tests of the tables and of the verdicts in the reports do that)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from matplotlib import image

MIN_INK = 0.02  # shipped figures have 6–30 % of their pixels drawn; a blank canvas has none
MIN_COLOURS = 16  # axes, text and data in anti-aliased shades; a blank or flat image has 1–2
MIN_SVG_PATHS = 10  # axes, ticks and data; an empty figure has a handful


def assert_figure_is_drawn(png: Path, svg: Path) -> None:
    """The PNG decodes and is not blank (ink on ≥ 2 % of its pixels, ≥ 16 distinct colours);
    the SVG parses as XML and draws at least a few paths and one text element."""
    pixels = image.imread(png)[..., :3]
    ink = float((pixels.min(axis=2) < 0.95).mean())
    colours = len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert ink >= MIN_INK and colours >= MIN_COLOURS, f"{png}: ink {ink:.3f}, colours {colours}"
    text = svg.read_text(encoding="utf-8")
    root = ET.fromstring(text)
    paths = sum(1 for element in root.iter() if element.tag.endswith("path"))
    assert paths >= MIN_SVG_PATHS, f"{svg}: {paths} paths"
    assert "<!-- " in text, f"{svg}: no text"  # matplotlib writes each text as a comment + glyphs
