# All set-up from nothing: `make demo` and `make test` create .venv/ and install what is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# System packages: espeak-ng speaks the synthetic world's sentences; chromium drives the web UI test.
APT_PACKAGES := espeak-ng chromium chromium-driver
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test setup system-packages clean

demo: $(STAMP)
	$(BIN)/dicetalk generate examples/portrait.png examples/speech.wav --emotion "0:surprised,3:sad" --no-crop -o outputs/demo.mp4

test: $(STAMP)
	$(BIN)/python -m pytest -q

setup: $(STAMP)

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml | system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build first, pinned: an unpinned torch would pull several GB of CUDA packages.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[ui,dev]'
	# Test-only: the reference code the real-face judges' tests compare ours with (SyncNet; FID's
	# InceptionV3). Their declared dependencies (torchvision, scenedetect, opencv-contrib) are not
	# needed for that and are not installed.
	$(BIN)/pip install -q --no-deps syncnet-python==0.2.3 torch-fidelity==0.4.0
	touch $(STAMP)

clean:
	rm -rf $(VENV) outputs
