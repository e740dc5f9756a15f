# Each target sets up its own virtualenv (.venv) from setup.cfg; re-running is cheap (a stamp file).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hms_infer-installed

.PHONY: test demo docs venv clean gpu-check

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch + torchvision first, as the pair this machine keeps on local disk (timm needs torchvision)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m hms_infer demo

# The documentation site (docs/, mkdocs.yml; the docs extra) into site/; --strict: a broken link or page fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

# On a GPU machine whose python3 has torch, timm, nnAudio and triton (no venv: such machines are often offline).
gpu-check:
	./gpu_check.sh

clean:
	rm -rf $(VENV) .venv-kaggle-image .venv-kaggle-image.lock demo_out gpu_check_out build dist site *.egg-info
