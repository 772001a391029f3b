# qorch: two commands. `make run` serves the product locally; `make test` passes on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The Firebase Auth emulator (firebase-tools, pinned in package.json + package-lock.json): development only.
NPM_STAMP := node_modules/.installed

.PHONY: run test demo bench lint fmt docs admin cleanup deploy-files deploy clean browser deploy-dashboard
CHROMIUM ?= /usr/bin/chromium

$(STAMP): requirements.txt requirements-dev.txt requirements-agents.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

$(NPM_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 20+ (Debian/Ubuntu: apt-get install nodejs npm)"; exit 2; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NPM_STAMP)

run: $(STAMP) $(NPM_STAMP)
	$(PY) -m tools.run

# The dashboard's browser tests drive Debian's Chromium. Installed here when missing (CI and these machines run as
# root); if that fails the tests fail and say how to install it. They never skip.
browser:
	@test -x $(CHROMIUM) || { echo "Installing Chromium for the dashboard's browser tests…"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "Could not install Chromium; the browser tests will fail. As root: apt-get update && apt-get install -y chromium"; }

test: $(STAMP) $(NPM_STAMP) browser
	$(PY) -m ruff check .
	$(PY) -m pytest

# A whole build by scripted AI agents, DISCOVERY to COMPLETED, on `make run`'s stack or one of its own (< 1 min).
demo: $(STAMP)
	$(PY) -m tools.demo

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
	rm -rf $(VENV) .pytest_cache .qorch test-output node_modules
