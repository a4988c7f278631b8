"""Hooks for the documentation site (mkdocs.yml)."""

from __future__ import annotations


def on_page_markdown(markdown: str, **_: object) -> str:
    """Table rows write a pipe inside a code span as ``\\|``: GitHub needs the escape, or the
    pipe splits the cell, but Python-Markdown keeps code spans verbatim and would show the
    backslash. Its tables already keep a code span's pipes in their cell, so drop the escape."""
    return "\n".join(
        line.replace("\\|", "|") if line.startswith("|") else line for line in markdown.split("\n")
    )
