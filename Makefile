# Thin wrappers around ops/dev.py, which needs nothing but Python 3.11+.
PYTHON ?= python3

.PHONY: run test demo lint setup
run:
	$(PYTHON) ops/dev.py run
test:
	$(PYTHON) ops/dev.py test
demo:
	$(PYTHON) ops/dev.py demo
lint:
	$(PYTHON) ops/dev.py lint
setup:
	$(PYTHON) ops/dev.py setup
