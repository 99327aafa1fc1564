# diffmst-lite: two commands for a fresh machine (see README.md).
#
#   make book   create .venv, install Python and system packages, build the book
#               executing every notebook (warnings are errors) -> _build/html/index.html
#   make test   the same, then the test suite (the page tests read the built HTML)
#
# Not needed for the book (it reads stored results), for the full-size experiments:
#   make data     synthetic and real songs under data/ (installs LMMS, SoundFonts and the
#                 Debian music packages with apt; an hour or more on 2 cores: LMMS renders in real time)
#   make results  the full-size evaluation of the shipped checkpoint -> assets/results
#                 (about half an hour on 2 cores; rerun whenever the checkpoint changes)
#
# Install steps are skipped when already done: the Python install is redone only
# when requirements.txt or pyproject.toml is newer than the stamp in .venv.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.diffmst-lite-installed
TORCH  := 2.13.0

# Notebooks' shell commands and subprocesses find the venv's tools first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help book test install system-deps python-deps clean data results widgets-frontend

DATA := data

help:
	@echo "make book   install everything, then build the book into _build/html (executes every notebook)"
	@echo "make test   make book, then run the test suite"
	@echo "make clean  remove _build (keeps .venv)"
	@echo "make widgets-frontend  move a widget's slider in JupyterLab (headless Chromium); part of make test"
	@echo "make data   build the synthetic and real songs of the full-size experiments under data/"
	@echo "make results  evaluate the shipped checkpoint at full size -> assets/results"

book: install
	DIFFMST_BOOK_BUILD=1 $(VENV)/bin/jupyter-book build . --all -W -n --keep-going

test: book
	$(PY) -m pytest

# The mixer widget in JupyterLab, its pan slider moved in headless Chromium (about a
# minute; tests/test_widgets_frontend.py runs the same script in make test).
widgets-frontend: install
	$(PY) scripts/check_widgets_frontend.py

install: system-deps python-deps

system-deps:
	@bash scripts/install_system_deps.sh

python-deps: $(STAMP)

$(PY):
	python3 -m venv $(VENV)

# torch is pinned first in requirements.txt (the CPU wheel); the package itself is
# installed with --no-deps so nothing can ask pip for an unpinned torch.
$(STAMP): requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install -e . --no-deps
	$(PY) -c "import torch, sys; v = torch.__version__; print('torch', v); sys.exit(0 if v.split('+')[0] == '$(TORCH)' else 'expected torch $(TORCH), got ' + v)"
	touch $@

clean:
	rm -rf _build

# Each tree is built once; make-real-songs keeps the songs a tree already has.
data: install
	@bash scripts/install_system_deps.sh --real-music
	test -d $(DATA)/synth || $(VENV)/bin/diffmst-lite make-songs $(DATA)/synth --songs 32 --seconds 20 --seed 0 \
	    --test-songs 8 --sample-rate 22050
	test -d $(DATA)/synthv || $(VENV)/bin/diffmst-lite make-songs $(DATA)/synthv --songs 48 --seconds 20 --seed 1 \
	    --test-songs 8 --sample-rate 22050 --varied
	test -d $(DATA)/synth_fresh || $(VENV)/bin/diffmst-lite make-songs $(DATA)/synth_fresh --songs 0 --seconds 20 \
	    --seed 100 --test-songs 96 --sample-rate 22050
	$(VENV)/bin/diffmst-lite make-real-songs $(DATA)/real --sources lmms --sample-rate 22050 --seconds 40
	$(VENV)/bin/diffmst-lite make-real-songs $(DATA)/realmidi --sources midi --sample-rate 22050 --seconds 60
	$(VENV)/bin/diffmst-lite make-real-songs $(DATA)/refs --sources "" --references-out $(DATA)/refs

# TRAINING_LOGS="p1=runs/p1/log.csv,p2=..." also stores the checkpoint's training curves;
# RESULTS_SETTINGS=clips runs only some steps (here the listening examples, about 10 CPU-minutes).
results: data
	$(PY) scripts/results.py --synthetic $(DATA)/synth --synthetic-fresh $(DATA)/synth_fresh \
	    --real $(DATA)/real,$(DATA)/realmidi \
	    --references $(DATA)/refs --out assets/results --jobs 2 \
	    $(if $(TRAINING_LOGS),--training-logs $(TRAINING_LOGS)) \
	    $(if $(RESULTS_SETTINGS),--settings $(RESULTS_SETTINGS))
