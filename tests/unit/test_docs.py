"""The README's two commands are what CI, make and the site's home page give: CI runs the
README's test command, so a copy that drifted from it would test something else than what a
reader is told to run. (Links, anchors and the site's navigation are the strict docs build's.)"""

from __future__ import annotations

import re

from tests.helpers import REPO


def _two_commands(page: str) -> list[str]:
    section = page.split("\n## Two commands\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```bash\n(.+)\n```$", section, flags=re.M)


def test_the_readme_and_the_sites_home_page_give_the_same_two_commands() -> None:
    readme = _two_commands((REPO / "README.md").read_text())
    assert len(readme) == 2
    assert _two_commands((REPO / "docs" / "index.md").read_text()) == readme


def test_ci_and_make_run_exactly_the_readmes_commands() -> None:
    serve, test = _two_commands((REPO / "README.md").read_text())
    ci = (REPO / ".ci" / "run").read_text().rstrip("\n").rsplit("\n", 1)[-1]
    assert ci == test
    make = (REPO / "Makefile").read_text().replace("$$", "$")
    assert f"\nserve:\n\t{serve}\n" in make
    assert f"\ntest:\n\t{test}\n" in make


def test_the_test_command_builds_the_docs_strictly_before_the_suite() -> None:
    _, test = _two_commands((REPO / "README.md").read_text())
    steps = [step.strip() for step in test.split("&&")]
    build = next(i for i, step in enumerate(steps) if step.startswith(".venv/bin/mkdocs build"))
    assert "--strict" in steps[build].split()
    # mkdocs counts warnings for --strict through its logger, which --quiet raises to ERROR:
    # with -q a broken link is neither shown nor counted, and the build passes.
    assert not {"-q", "--quiet"} & set(steps[build].split())
    assert steps[-1] == ".venv/bin/pytest" and build < len(steps) - 1
