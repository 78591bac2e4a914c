# Two commands on a fresh machine (Python 3.11+, Java 17+, Maven):
#   make demo   install into .venv, start a local Kafka broker and the workers, run sample requests
#   make test   install into .venv and run the whole test suite (it starts its own broker)
# Longer runs: make soak (repeated faults, thousands of requests), make bench (throughput vs raw Kafka)
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test soak bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	# pdqhash (PDQ hashing) ships as source: an isolated build links another numpy and fails to import,
	# so it is built here against the numpy this environment runs, before the project's own install.
	$(VENV)/bin/pip install --quiet 'numpy>=1.26' cython 'setuptools>=77,<81' wheel
	$(VENV)/bin/pip install --quiet --no-build-isolation 'pdqhash>=0.2.8'
	# setuptools tells every editable install that folders of the checkout shadow the package (a UserWarning);
	# that is what an editable install is for, so the notice is silenced for this one command.
	PYTHONWARNINGS=ignore::UserWarning $(VENV)/bin/pip install --quiet -e '.[test,postgres]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/trustreel demo

# pytest exits 5 when it collected nothing: that is a failure here, not a pass.
test: $(STAMP)
	$(VENV)/bin/python -m pytest -ra; status=$$?; \
	if [ $$status -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi; exit $$status

# The long versions of the fault tests (about 15 minutes on 2 cores).
soak: $(STAMP)
	$(VENV)/bin/python -m pytest -ra -m soak; status=$$?; \
	if [ $$status -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi; exit $$status

# 20,000 requests through the moderation stages, and the same hops on raw Kafka, in one run.
bench: $(STAMP)
	$(VENV)/bin/python bench/pipeline.py --requests 20000

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
