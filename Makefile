# Shortcuts; the README's two commands work without make.
.PHONY: serve test bench lint

serve:
	python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/raykernel --transport http

test:
	python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]" && npm ci --prefix tests/inspector --no-audit --no-fund --loglevel=error && .venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mkdocs build --strict -d "$$(mktemp -d)" && .venv/bin/pytest

bench:
	python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]" && .venv/bin/python bench/run.py

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
