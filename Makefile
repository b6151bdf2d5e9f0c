# The README's commands. Everything a fresh clone needs is installed from here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# SAM CLI pins its own boto3/botocore; it gets a venv of its own so it cannot move ours.
SAM_VENV  := .tools/sam
SAM_STAMP := $(SAM_VENV)/.installed
SAM_VERSION := 1.170.0

export SAM_CLI_TELEMETRY := 0

.PHONY: install dev test test-fast bench demo lint validate clean

$(STAMP): pyproject.toml constraints.txt layers/contracts/pyproject.toml layers/common/pyproject.toml client/pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e layers/contracts -e "layers/common[http,aws,db]" -e client -e ".[dev]"
	@touch $@

$(SAM_STAMP):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet "aws-sam-cli==$(SAM_VERSION)"
	@touch $@

install: $(STAMP) $(SAM_STAMP)

## make dev: start the local stack (embedded PostgreSQL, moto, the functions behind :3000 and :7007-7009)
dev: $(STAMP)
	$(BIN)/python -m devstack

## make test: install everything and run the whole suite
test: $(STAMP) $(SAM_STAMP)
	$(BIN)/ruff check .
	SAM_BIN=$(CURDIR)/$(SAM_VENV)/bin/sam $(BIN)/python -m pytest $(PYTEST_ARGS)

## make bench: benchmarks that print figures
bench: $(STAMP)
	$(BIN)/python -m bench

## make demo: Sofia answers a Ukrainian and an English question on the local stack (offline by default)
demo: $(STAMP)
	$(BIN)/python -m ops.demo

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

validate: $(STAMP) $(SAM_STAMP)
	$(BIN)/cfn-lint template.yaml
	AWS_DEFAULT_REGION=us-east-1 $(SAM_VENV)/bin/sam validate --lint --template template.yaml

clean:
	rm -rf $(VENV) .tools .pytest_cache
