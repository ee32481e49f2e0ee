# The README's two commands are `make up` and `make test`; the rest is for developers and CI.
SHELL := /bin/bash
# uv as installed by deploy/local/setup.sh: on PATH, or (pip into a Python whose scripts are not
# on PATH, e.g. under pyenv before a rehash) as a module.
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
RUN := $(UV) run --locked
UNIT_TESTS := $(wildcard services/*/tests/unit shared/tests/unit)

.PHONY: setup up down status test test-unit fuzz chaos chaos-small lint format typecheck compose-config asyncapi ci staff-token dead-letters

setup:
	@bash deploy/local/setup.sh

up: setup  ## database, broker, migrations, Leipzig seed, mail catcher and all three services
	@$(RUN) python -m devstack up

down:  ## stop everything `make up` started
	@$(RUN) python -m devstack down

status:
	@$(RUN) python -m devstack status

test: setup  ## the fast tier alone (no sockets allowed), then the rest with the small fault-injection run; starts its own broker and test database
	@$(RUN) pytest -m unit -q $(UNIT_TESTS)
	@$(RUN) pytest -m "not unit"

test-unit:  ## the fast tier (after `make setup`): use cases against fakes, no PostgreSQL, broker or network (tests under */tests/unit/)
	@$(RUN) pytest -m unit -q $(UNIT_TESTS)

fuzz: setup  ## schemathesis against the three services' OpenAPI documents, FUZZ_REQUESTS (20,000) requests; prints counts per operation and check
	@MM_FUZZ_REQUESTS=$(or $(FUZZ_REQUESTS),20000) $(RUN) pytest tests/test_api_conformance.py -k every_answer -s -q

chaos-small: setup  ## the small fault-injection runs of `make test` alone (300 reports, shorter outages; a broker lost twice)
	@$(RUN) pytest -m chaos

chaos: setup  ## the fault-injection suite, full size (10,000 reports); figures in bench/results/chaos.json
	@$(RUN) python -m devstack.chaos --reports 10000 --out bench/results/chaos.json

lint:
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .

format:
	@$(RUN) ruff check --fix .
	@$(RUN) ruff format .

typecheck:  ## mypy over the configured tree, then each service's fakes (every one is a conftest.py: one run each)
	@$(RUN) mypy
	@for fakes in services/*/tests/unit/conftest.py; do $(RUN) mypy $$fakes || exit 1; done

compose-config:  ## validate docker-compose.yml with the real compose binary
	@bash deploy/compose-config.sh

asyncapi:  ## AsyncAPI documents of the three services under var/asyncapi/
	@mkdir -p var/asyncapi
	@for m in intake geo_router notifier; do \
	  $(RUN) faststream docs gen --factory $$m.bootstrap:asyncapi_app --out var/asyncapi/$$m.json >/dev/null && echo var/asyncapi/$$m.json; \
	done

ci: setup lint typecheck compose-config test

staff-token:  ## make staff-token OFFICE=VTA-OST [JURISDICTION=koeln]: a staff account for the local stack; the token is the last line
	@test -n "$(OFFICE)" || { echo "usage: make staff-token OFFICE=<office code, e.g. VTA-OST> [JURISDICTION=<code>]"; exit 2; }
	@$(RUN) intake staff-token --office $(OFFICE) $(if $(JURISDICTION),--jurisdiction $(JURISDICTION))

dead-letters:  ## what went to dead-letter.v1; send back with `uv run python -m mm_shared.dead_letters redrive OFFSET`
	@$(RUN) python -m mm_shared.dead_letters list
