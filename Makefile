# Two entry points for a fresh machine with Python 3.11: `make pipeline` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: pipeline paper test venv browser soundfonts soundtracks

# Where an NVIDIA GPU answers (nvidia-smi), TensorFlow's CUDA build at the pinned version replaces the CPU one.
TF_VERSION := $(shell sed -n 's/^tensorflow-cpu==\([^ ]*\).*/\1/p' requirements.txt)
TENSORFLOW := $(shell nvidia-smi >/dev/null 2>&1 && echo "tensorflow[and-cuda]==$(TF_VERSION)" || echo "tensorflow-cpu==$(TF_VERSION)")

$(BIN)/.installed: requirements.txt pyproject.toml musictag/venv-path.pth
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	grep -v '^tensorflow-cpu==' requirements.txt > $(VENV)/requirements.txt
	$(BIN)/pip install --quiet -r $(VENV)/requirements.txt "$(TENSORFLOW)"
	$(BIN)/pip install --quiet --no-deps tinysoundfont==0.3.7
	$(BIN)/pip install --quiet --no-deps -e .
	cp musictag/venv-path.pth "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/"
	touch $@

venv: $(BIN)/.installed

# Debian's Chromium and its driver for the browser tests; whichever is missing is installed. Without them
# (no root, no apt) those tests skip, saying so.
browser:
	@{ command -v chromium && command -v chromedriver; } >/dev/null \
		|| { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; } \
		|| echo "chromium or chromedriver not installed: the browser tests will be skipped"

# The General MIDI banks params.yaml names beyond pretty_midi's TimGM6mb: csound's and the OPL3 FM bank for
# training (data.embedded.soundfonts), FluidR3 held out for the shift stage (shift.soundfonts). Installed
# with apt where one is missing; without apt or root, the dataset stage names what is missing.
SOUNDFONTS := /usr/share/sounds/sf2/sf_GMbank.sf2 /usr/share/sounds/sf2/OPL-3_FM_128M.sf2 /usr/share/sounds/sf2/FluidR3_GM.sf2
soundfonts:
	@ls $(SOUNDFONTS) >/dev/null 2>&1 \
		|| { apt-get update -qq && apt-get install -y -qq csound-soundfont opl3-soundfont fluid-soundfont-gm >/dev/null; } \
		|| echo "soundfonts not installed: list only those you have in params.yaml (data.embedded.soundfonts, shift.soundfonts)"

# The real-music retrieval benchmark's game soundtracks (benchmarks/soundtrack_retrieval.py), with apt.
SOUNDTRACK_PACKAGES := wesnoth-1.16-music warzone2100-music hedgewars-data supertux-data freedroidrpg-data \
	xmoto-data extremetuxracer-data frozen-bubble-data scorched3d-data
soundtracks:
	@dpkg -s $(SOUNDTRACK_PACKAGES) >/dev/null 2>&1 \
		|| { apt-get update -qq && apt-get install -y -qq --no-install-recommends $(SOUNDTRACK_PACKAGES) >/dev/null; } \
		|| echo "soundtracks not installed: the benchmark names what is missing"

pipeline: venv soundfonts
	$(BIN)/dvc repro  # stage commands call `python`: the venv's (musictag/venv-path.pth)

paper: venv  # paper mode (README "Paper mode"): its expected wall time first, then every run and the report
	$(BIN)/musictag paper-cost
	$(BIN)/dvc repro paper/dvc.yaml

test: venv browser  # two workers, one test file each (module fixtures build once): CI's two cores busy
	$(BIN)/python -m pytest -n 2 --dist loadfile
