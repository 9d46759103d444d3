# The project's commands. `make test` is what CI runs (.ci/run) and what the README gives.
.PHONY: test unit integration coverage e2e lint deps demo demo-keep bench bench-backup bench-hooks

UV ?= uv
PYTEST = $(UV) run --frozen pytest

deps:
	bash tools/bootstrap.sh

lint:
	$(UV) run --frozen ruff check src lib tests substrate tools
	$(UV) run --frozen ruff format --check src lib tests substrate tools
	$(UV) run --frozen pyright

# Coverage of src/ and lib/ counts every tier: the library is exercised for real in tier 2.
unit:
	$(PYTEST) tests/unit --cov --cov-report= -q

integration:
	$(PYTEST) tests/integration --cov --cov-append --cov-report= -q

coverage:
	$(UV) run --frozen coverage report --fail-under=85

# One pytest process per module: each deploys its own model on a fresh substrate, and nothing
# a module's hooks left in the process (imported charm modules, threads) reaches the next. Every
# module runs even after one fails (the failures are listed at the end, and fail the target).
e2e:
	@failed=""; for module in tests/e2e/test_*.py; do \
		echo "== $$module"; \
		$(PYTEST) $$module --cov --cov-append --cov-report= -q || failed="$$failed $$module"; \
	done; \
	if [ -n "$$failed" ]; then echo "e2e modules that failed:$$failed"; exit 1; fi

# The main job: a 3-unit postgresql-k8s on the local substrate (no Kubernetes), a row written and
# read through the primary Service, a status table, then everything torn down.
demo: deps
	$(UV) run --frozen python -m substrate demo

demo-keep: deps
	$(UV) run --frozen python -m substrate demo --keep

# Benchmarks: bootstrap, failover and switchover figures; the last line printed is one JSON object.
bench: deps
	$(UV) run --frozen python -m substrate bench

# Every tier; pytest exits 5 when nothing is collected, which fails the build.
test: deps lint unit integration e2e coverage

# Backup and restore through the charm against pgBackRest run directly; JSON last line.
bench-backup: deps
	$(UV) run --frozen python -m substrate bench-backup

# What single hooks cost (wall time, Pebble/Patroni/SQL calls) on an idle cluster; JSON last line.
bench-hooks: deps
	$(UV) run --frozen python -m substrate bench-hooks
