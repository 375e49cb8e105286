# Two commands: `make demo` and `make test`. Both set up .venv from scratch on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_CORPUS := data/sample
DEMO_TOKENIZER := models/demo.sp.model
DEMO_LM := models/en.arpa

.PHONY: setup demo sft-demo test lint format bench clean trainer-readers browser tiny-llm

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

# The demo's perplexity model is trained on a second sample drawn with another seed (CCNet
# trained on Wikipedia; production jobs name CCNet's en.arpa.bin + en.sp.model or train on
# their own reference text).
DEMO_LM_CORPUS := data/lm_reference

$(DEMO_LM_CORPUS)/_SUCCESS: $(STAMP)
	$(BIN)/refinery sample $(DEMO_LM_CORPUS) --docs 3000 --shards 2 --seed 101

$(DEMO_LM): $(DEMO_LM_CORPUS)/_SUCCESS
	$(BIN)/refinery train-lm $(DEMO_LM_CORPUS) models --lang en --order 5

demo: $(DEMO_TOKENIZER) $(DEMO_LM)
	$(BIN)/refinery run jobs/quickstart.yaml

# The fine-tuning demo: chat data made from the Python docs in three formats, and a byte-level
# BPE tokenizer.json with ChatML's special tokens, trained on the sample corpus.
CHAT_DATA := data/chat
CHAT_TOKENIZER := models/chat/tokenizer.json

$(CHAT_DATA)/_plants.json: $(STAMP)
	$(BIN)/refinery sample-chat $(CHAT_DATA) --conversations 2000

$(CHAT_TOKENIZER): $(DEMO_CORPUS)/_SUCCESS
	$(BIN)/refinery train-tokenizer $(DEMO_CORPUS) $(CHAT_TOKENIZER) --vocab-size 8000 --format tokenizer.json

sft-demo: $(CHAT_DATA)/_plants.json $(CHAT_TOKENIZER)
	$(BIN)/refinery run jobs/sft_quickstart.yaml

# Refinery's shards read by the trainers' own readers (Megatron-LM's IndexedDataset, datatrove's
# DatatroveFileDataset), installed into their own venv: torch 2.13.0 CPU (a wheel on this machine
# image's disk) + megatron-core + datatrove. tests/formats/test_trainer_readers.py uses it.
TRAINERS_VENV := benchmarks/.venv-trainers
TRAINERS_STAMP := $(TRAINERS_VENV)/.installed

$(TRAINERS_STAMP): benchmarks/requirements-trainers.txt
	$(PYTHON) -m venv $(TRAINERS_VENV)
	$(TRAINERS_VENV)/bin/python -m pip install --quiet -r benchmarks/requirements-trainers.txt
	touch $@

# The report's browser test drives Debian's chromium (tests/report/test_report_browser.py):
# installed with apt-get where this runs as root; elsewhere that test skips, saying why.
CHROMIUM := /usr/bin/chromium

browser:
	@if [ ! -x $(CHROMIUM) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y -qq chromium >/dev/null 2>&1 || \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
		echo "could not install chromium: the report's browser test will skip"; \
	fi

# The three setups are independent: built side by side (most of their time is pip and apt
# waiting on the disk and the network).
test:
	$(MAKE) --no-print-directory -j3 lint $(TRAINERS_STAMP) browser
	$(BIN)/python -m pytest -q --durations=25

# ruff: formatting and lint (imports sorted); `make format` rewrites, `make lint` only checks.
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m benchmarks job --docs 20000

# the test LLM of the generation tests, trained again and kept in tests/fixtures/tiny_llm
# (after a change to tests/helpers/instruction_grammar.py, tiny_llm.py or the sample corpus)
tiny-llm: $(STAMP) $(TRAINERS_STAMP)
	$(BIN)/python -m tests.helpers.llm_server

trainer-readers: $(STAMP) $(TRAINERS_STAMP)
	$(BIN)/python -m pytest -q tests/formats/test_trainer_readers.py

clean:
	rm -rf out data models
