# Shopmail: `make demo [DATE=2026-03-08]` runs a whole day's schedule on the embedded demo shop;
# `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export GX_ANALYTICS_ENABLED := False
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: demo test bench lint venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/shopmail demo $(if $(DATE),--as-of $(DATE))

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m shopmail.devtools.bench --customers $(or $(CUSTOMERS),1000000)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf .shopmail
