# tongban: two commands on a fresh machine.
#   make demo   bootstrap (uv, locked environment), then run the demo on embedded defaults
#   make test   bootstrap (plus the system packages tests need), then lint, types, every test
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never
export UV_SYSTEM_CERTS := 1

.PHONY: help demo test lint typecheck pytest bench

help:
	@echo "make demo   run tongban on this machine with every device simulated"
	@echo "make test   ruff, mypy and the whole test suite"
	@echo "make bench  the benchmarks (results go in bench/RESULTS.md by hand)"

demo:
	@UV=$$(scripts/bootstrap.sh) && $$UV run --frozen tongban demo

test:
	@UV=$$(scripts/bootstrap.sh --system) && \
	  echo "== ruff" && $$UV run --frozen ruff check . && \
	  echo "== mypy" && $$UV run --frozen mypy && \
	  echo "== pytest" && $$UV run --frozen pytest

bench:
	@UV=$$(scripts/bootstrap.sh) && $$UV run --frozen python bench/idcard.py && \
	  $$UV run --frozen python bench/scanner.py && $$UV run --frozen python bench/face.py && \
	  $$UV run --frozen python bench/call.py && $$UV run --frozen python bench/day.py
