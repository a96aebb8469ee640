# Two entry points for people: `make demo` and `make test`. Both set up what
# they need first (.ci/setup is idempotent and quick the second time).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test lint typecheck unit demo bench snap snapd-check clean

setup:
	@bash .ci/setup

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: setup
	$(VENV)/bin/mypy --strict src

test: setup lint typecheck
	$(PY) -m pytest -p no:cacheprovider --durations=15 tests

unit: setup
	$(PY) -m pytest -p no:cacheprovider tests/unit

demo: setup
	$(PY) -m tests.demo $(if $(KEEP),--keep --keep-running)

bench: setup
	$(PY) -m bench

# The snap, assembled as `snapcraft pack` would and checked by `snap pack`
# (livepatch.snap.build; docs/snap.md). Cached by a hash of its inputs; the
# last line printed is the .snap's path.
snap: setup
	@$(PY) -m livepatch.snap.build

# Only the real-snapd tests: the .snap installed, confined, refreshed, reverted and
# removed by snapd in the snapd test machine (tests/snapd; its image is built and
# cached under ~/.cache/livepatch/snapd-vm when missing). One boot for the suite.
snapd-check: setup
	$(PY) -m pytest -p no:cacheprovider --durations=10 tests/snapd

clean:
	rm -rf $(VENV) build src/*.egg-info
