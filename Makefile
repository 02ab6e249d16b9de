# Two entry points: `make run` (set up, then run the main job) and `make test` (set up, then test).
# Everything a fresh clone needs is installed here; torch goes first, on its own, so that pip
# takes the CPU wheel instead of resolving a multi-GB CUDA build.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: setup run test lint bench clean chromium

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install $(TORCH)
	$(PIP) install -e '.[test,aws]'
	# MTCNN's weights (the default detector's proposals) are data files of facenet-pytorch; its
	# pins would replace torch and pull torchvision, so it goes in without its dependencies.
	$(PIP) install --no-deps facenet-pytorch==2.6.0
	$(MAKE) --no-print-directory chromium
	touch $(STAMP)

# The browser test drives Debian's chromium; install it where we can (root + apt), else the
# test skips with its reason.
chromium:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

setup: $(STAMP)

ALBUM ?= ../shared/data/photos
# `make run PORT=8600` chooses the port (empty: photosearch app's default).
PORT ?=
PORT_OPTION := $(if $(strip $(PORT)),--port $(PORT),)
# Opens the web app on the album; "Index new photos" there indexes it in the background.
run: $(STAMP)
	@if [ -e "$(ALBUM)" ]; then $(VENV)/bin/photosearch app --album "$(ALBUM)" $(PORT_OPTION); \
	else echo "album $(ALBUM) not found: pick a folder in the app (or make run ALBUM=~/Pictures)"; \
	$(VENV)/bin/photosearch app $(PORT_OPTION); fi

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

test: $(STAMP) lint
	$(PY) -m pytest -n 2 --dist loadfile

# The peer we measure against: the face_recognition library (its CLI and dlib-bin underneath).
# It needs pkg_resources (setuptools < 81; torch needs >= 77) and is installed without its
# source-built dlib dependency, which dlib-bin provides.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(PIP) install 'setuptools>=77,<81'
	$(PIP) install --no-deps face_recognition==1.3.0
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
