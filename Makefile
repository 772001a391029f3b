# qorch: two commands. `make run` serves the product locally; `make test` passes on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench lint fmt docs admin cleanup deploy-files deploy clean browser deploy-dashboard
CHROMIUM ?= /usr/bin/chromium

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m tools.run

# The dashboard's browser tests drive Debian's Chromium. Installed here when missing (CI and these machines run as
# root); if that fails the tests fail and say how to install it. They never skip.
browser:
	@test -x $(CHROMIUM) || { echo "Installing Chromium for the dashboard's browser tests…"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "Could not install Chromium; the browser tests will fail. As root: apt-get update && apt-get install -y chromium"; }

test: $(STAMP) browser
	$(PY) -m ruff check .
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m bench

lint: $(STAMP)
	$(PY) -m ruff check .

docs: $(STAMP)
	$(PY) -m tools.gendocs

# make admin ARGS="create-account --name Acme --entitled"
admin: $(STAMP)
	$(PY) -m tools.admin $(ARGS)

# The scheduled cleanup, once, here (against FIRESTORE_EMULATOR_HOST, e.g. make run's): make cleanup ARGS="--tasks stale"
cleanup: $(STAMP)
	$(PY) -m tools.cleanup $(ARGS)

# Regenerate serverless.yml, infra/api-gateway.yaml and infra/deploy-plan.sh from the code (make test checks them).
deploy-files: $(STAMP)
	$(PY) -m tools.gendeploy

# Deploy to Google Cloud: PROJECT=my-project [REGION=europe-west1] make deploy [STEPS="functions"] (docs/deploy.md)
deploy: $(STAMP)
	PYTHON=$(PY) infra/deploy.sh $(STEPS)

# The dashboard on Firebase Hosting: PROJECT=my-project API_BASE=https://<gateway host>/v1 make deploy-dashboard
deploy-dashboard:
	infra/deploy-dashboard.sh

clean:
	rm -rf $(VENV) .pytest_cache .qorch test-output
