# The project's commands. `make test` is what CI runs (.ci/run) and what the README gives.
.PHONY: test unit integration coverage e2e lint deps

UV ?= uv
PYTEST = $(UV) run --frozen pytest

deps:
	bash tools/install-workload.sh
	$(UV) sync --frozen

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

e2e:
	$(PYTEST) tests/e2e -q

# Every tier; pytest exits 5 when nothing is collected, which fails the build.
test: lint unit integration coverage
