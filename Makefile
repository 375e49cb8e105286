# Two commands: `make demo` and `make test`. Both set up .venv from scratch on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_CORPUS := data/sample
DEMO_TOKENIZER := models/demo.sp.model

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

$(DEMO_CORPUS)/_SUCCESS: $(STAMP)
	$(BIN)/refinery sample $(DEMO_CORPUS) --docs 6000 --shards 8

$(DEMO_TOKENIZER): $(DEMO_CORPUS)/_SUCCESS
	$(BIN)/refinery train-tokenizer $(DEMO_CORPUS) $(DEMO_TOKENIZER) --vocab-size 8000

demo: $(DEMO_TOKENIZER)
	$(BIN)/refinery run jobs/quickstart.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py job --docs 20000

clean:
	rm -rf out data models
