"""Pages and documents from Jinja2 templates shipped in the package (heritage_seg/reporting/templates/): predict's
and aggregate's report.html and export's model_card.md. The Python side computes what a page shows; the
templates say how it looks, so a page can be changed without reading the code that fills it. HTML templates
escape every value unless it is marked safe (`markupsafe.Markup`, e.g. an embedded picture's data URI)."""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape


def pct(value: float | None) -> str:
    """A share as a percentage with two decimals; "–" where it is undefined (a class absent from both)."""
    return "–" if value is None else f"{100 * value:.2f}"


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("heritage_seg.reporting", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=StrictUndefined,  # a name the code forgot to pass fails, instead of rendering as nothing
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["pct"] = pct
    return env


def render(name: str, **context: Any) -> str:
    """The template `name` (e.g. "scan_report.html.j2") filled with `context`."""
    return environment().get_template(name).render(**context)
