# Shopmail: `make demo [DATE=2026-03-08]` runs three shop days on the embedded demo shop through the local SendGrid loop;
# `make test` runs the tests and builds the documentation site (`make docs`). Both install exactly the committed lock (uv.lock) into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
UV := .tools/bin/uv
export GX_ANALYTICS_ENABLED := False
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: demo test docs bench lint venv lock clean

# uv itself, pinned, in its own small venv (.tools), so the project venv holds the lock exactly.
$(UV):
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet uv==$(UV_VERSION)

# `--locked`: install exactly uv.lock, and fail if it no longer matches pyproject.toml.
$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --extra dev --python python3 --quiet
	touch $(STAMP)

venv: $(STAMP)

# Refresh the lock after changing dependencies (or to take newer releases), then run `make test`.
lock: $(UV)
	$(UV) lock --upgrade --python python3

demo: $(STAMP)
	$(VENV)/bin/shopmail demo $(if $(DATE),--as-of $(DATE))

test: $(STAMP) docs
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# The documentation site (mkdocs.yml, docs/), strictly: a broken link, a missing page or a nav entry
# without its file fails. Built into a temporary folder, never committed; the reference pages are
# generated from the code during the build (mkdocs_hooks.py).
docs: $(STAMP)
	@site=$$(mktemp -d) && trap 'rm -rf "$$site"' EXIT && \
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir "$$site" && \
	echo "docs: built strictly"

bench: $(STAMP)
	$(PY) -m shopmail.devtools.bench --customers $(or $(CUSTOMERS),1000000)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf .shopmail
