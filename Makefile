# repo-cluster: `make lab` builds the article's cluster on the embedded lab; `make test` tests it.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: test test-unit test-render test-lab lint deps venv tools lab lab-down bench clean

$(VENV_STAMP): requirements.txt requirements-dev.txt constraints.txt
	test -x $(PY) || python3 -m venv .venv
	.venv/bin/pip install -q -r requirements-dev.txt -c constraints.txt
	touch $@

venv: $(VENV_STAMP)

deps: venv
	scripts/install-deps

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

# Pulumi CLI, language host and vcsim for the e2e tier (built once from the Go module proxy)
tools:
	scripts/bootstrap-tools pulumi pulumi-language-python vcsim >/dev/null

test: deps lint tools
	.venv/bin/pytest

test-unit: deps
	.venv/bin/pytest -m unit

test-render: deps
	.venv/bin/pytest -m render

test-lab: deps
	.venv/bin/pytest -m lab

lab: deps
	scripts/lab

lab-down: venv
	scripts/lab-down

bench: deps
	for b in bench/*.py; do $(PY) "$$b" || exit 1; done

clean:
	rm -rf .venv .pytest_cache .ruff_cache
