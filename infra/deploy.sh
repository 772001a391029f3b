#!/usr/bin/env bash
# Deploy qorch to a Google Cloud project. Re-runnable: every step creates what is missing and updates what exists;
# nothing is deleted. What to create comes from infra/deploy-plan.sh (generated from the code's tables: run
# `make deploy-files` after adding a function, an index or a schedule). See docs/deploy.md.
#
#   PROJECT=my-project [REGION=europe-west1] infra/deploy.sh [STEP ...]
#
# Steps, in the order `all` (the default) runs them:
#   apis        enable the Google APIs qorch uses
#   firestore   the database (native mode), deny-all security rules, indexes, field overrides, TTL policies
#   accounts    the service accounts and their project roles (least privilege)
#   secrets     the Secret Manager secrets (containers; add values with `gcloud secrets versions add`)
#   functions   every function (2nd gen, python312); `functions NAME...` deploys only those
#   schedules   Pub/Sub topics and Cloud Scheduler jobs for the event functions
#   gateway     API Gateway: the public /v1 paths → functions
#   check       smoke test through the gateway (GET /v1/state-machine)
#
# Environment: PROJECT (required), REGION (functions, scheduler, gateway; default europe-west1),
# FIRESTORE_LOCATION (default eur3; only used when the database is created), PARALLEL (function deploys at once,
# default 4), PYTHON (with the requirements installed; default python3), and the plain configuration the functions get (PLAN_ENVIRONMENT in infra/deploy-plan.sh, e.g.
# QORCH_S3_BUCKET, QORCH_STRIPE_PRICE_PRO). A secret's value may be given in its environment variable (e.g.
# STRIPE_API_KEY): the secrets step then adds it as the secret's newest version.
set -euo pipefail

cd "$(dirname "$0")/.."
: "${PROJECT:?set PROJECT to the Google Cloud project id}"
REGION="${REGION:-europe-west1}"
FIRESTORE_LOCATION="${FIRESTORE_LOCATION:-eur3}"
PARALLEL="${PARALLEL:-4}"
PYTHON="${PYTHON:-python3}"  # with the project's requirements (make deploy uses .venv/bin/python)
RUNTIME=python312
API=qorch
GATEWAY=qorch
RUNTIME_SA="qorch-functions@${PROJECT}.iam.gserviceaccount.com"
GATEWAY_SA="qorch-gateway@${PROJECT}.iam.gserviceaccount.com"
TRIGGER_SA="qorch-trigger@${PROJECT}.iam.gserviceaccount.com"
FIRESTORE_API="https://firestore.googleapis.com/v1/projects/${PROJECT}/databases/(default)"
RULES_API="https://firebaserules.googleapis.com/v1/projects/${PROJECT}"

# shellcheck source=infra/deploy-plan.sh
source infra/deploy-plan.sh

log() { printf '\n== %s\n' "$*" >&2; }
gc() { gcloud --project="$PROJECT" --quiet "$@"; }
exists() { "$@" >/dev/null 2>&1; }
token() { gcloud auth print-access-token; }

# A REST call with the deployer's credentials; prints the response body, fails on an HTTP error.
api() {
  local method="$1" url="$2" body="${3:-}"
  local args=(-sS -g --fail-with-body -X "$method" -H "Authorization: Bearer $(token)" -H "Content-Type: application/json")
  [[ -n "$body" ]] && args+=(--data "$body")
  curl "${args[@]}" "$url"
}

# ---- apis ----------------------------------------------------------------------------------------------------------

step_apis() {
  log "Enabling APIs"
  gc services enable cloudfunctions.googleapis.com run.googleapis.com cloudbuild.googleapis.com \
    artifactregistry.googleapis.com eventarc.googleapis.com pubsub.googleapis.com cloudscheduler.googleapis.com \
    firestore.googleapis.com firebaserules.googleapis.com secretmanager.googleapis.com iam.googleapis.com \
    apigateway.googleapis.com servicemanagement.googleapis.com servicecontrol.googleapis.com logging.googleapis.com
}

# ---- firestore -----------------------------------------------------------------------------------------------------

ensure_index() {  # COLLECTION_GROUP SCOPE FIELD_CONFIG...
  local group="$1" scope="$2" out; shift 2
  local configs=(); for f in "$@"; do configs+=(--field-config="$f"); done
  if out=$(gc firestore indexes composite create --collection-group="$group" --query-scope="$scope" \
        "${configs[@]}" --async 2>&1); then
    echo "index $group ($scope) $*: creating" >&2
  elif grep -qi "already exists" <<<"$out"; then
    echo "index $group ($scope) $*: exists" >&2
  else
    echo "$out" >&2; return 1
  fi
}

ensure_field_indexes() {  # COLLECTION_GROUP FIELD INDEX_CONFIG_JSON: the field's single-field indexes, exactly
  local group="$1" field="$2" want="$3" have
  have=$(api GET "${FIRESTORE_API}/collectionGroups/${group}/fields/${field}" || echo '{}')
  if python3 - "$have" "$want" <<'PY'
import json, sys
have, want = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def norm(cfg):
    return sorted(json.dumps({"scope": i.get("queryScope"), "fields": i.get("fields")}, sort_keys=True)
                  for i in cfg.get("indexes", []))
# (JSON omits false: a field with an override has no usesAncestorConfig; one without has it true)
same = not have.get("indexConfig", {}).get("usesAncestorConfig", False) and \
    norm(have.get("indexConfig", {})) == norm(want)
sys.exit(0 if same else 1)
PY
  then
    echo "field $group.$field: as declared" >&2
  else
    echo "field $group.$field: updating its indexes" >&2
    api PATCH "${FIRESTORE_API}/collectionGroups/${group}/fields/${field}?updateMask=indexConfig" \
      "{\"indexConfig\":${want}}" >/dev/null
  fi
}

ensure_ttl() {  # COLLECTION_GROUP FIELD
  local state
  state=$(gc firestore fields ttls list --collection-group="$1" --format='value(name,ttlConfig.state)' 2>/dev/null \
    | awk -v f="/fields/$2" 'index($1, f) {print $2}')
  if [[ "$state" == "ACTIVE" || "$state" == "CREATING" ]]; then
    echo "ttl $1.$2: $state" >&2
  else
    gc firestore fields ttls update "$2" --collection-group="$1" --enable-ttl --async
  fi
}

deploy_rules() {
  local source ruleset
  source=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' infra/firestore.rules)
  ruleset=$(api POST "${RULES_API}/rulesets" "{\"source\":{\"files\":[{\"name\":\"firestore.rules\",\"content\":${source}}]}}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["name"])')
  if exists api GET "${RULES_API}/releases/cloud.firestore"; then
    api PATCH "${RULES_API}/releases/cloud.firestore" \
      "{\"release\":{\"name\":\"projects/${PROJECT}/releases/cloud.firestore\",\"rulesetName\":\"${ruleset}\"}}" >/dev/null
  else
    api POST "${RULES_API}/releases" \
      "{\"name\":\"projects/${PROJECT}/releases/cloud.firestore\",\"rulesetName\":\"${ruleset}\"}" >/dev/null
  fi
  echo "security rules: released ${ruleset}" >&2
}

step_firestore() {
  log "Firestore: database, rules, indexes, field overrides, TTL"
  if ! exists gc firestore databases describe --database='(default)'; then
    gc firestore databases create --location="$FIRESTORE_LOCATION" --type=firestore-native --delete-protection
  fi
  deploy_rules
  plan_firestore
}

# ---- accounts ------------------------------------------------------------------------------------------------------

ensure_account() {  # NAME DESCRIPTION
  exists gc iam service-accounts describe "$1@${PROJECT}.iam.gserviceaccount.com" \
    || gc iam service-accounts create "$1" --display-name="$2"
}

step_accounts() {
  log "Service accounts (least privilege)"
  ensure_account qorch-functions "qorch functions: Firestore and their own secrets"
  ensure_account qorch-gateway "qorch API Gateway: invokes the HTTP functions"
  ensure_account qorch-trigger "qorch Eventarc trigger: invokes the scheduled functions"
  # Read and write documents; nothing else in the project (no admin of indexes, no other databases' IAM).
  gc projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:${RUNTIME_SA}" \
    --role=roles/datastore.user --condition=None >/dev/null
  # Secret access is granted per secret (secrets step); invoker rights per function (functions step).
}

# ---- secrets -------------------------------------------------------------------------------------------------------

ensure_secret() {  # SECRET ENV_VAR
  local secret="$1" env="$2"
  exists gc secrets describe "$secret" || gc secrets create "$secret" --replication-policy=automatic
  gc secrets add-iam-policy-binding "$secret" --member="serviceAccount:${RUNTIME_SA}" \
    --role=roles/secretmanager.secretAccessor --condition=None >/dev/null
  if [[ -n "${!env:-}" ]]; then
    printf '%s' "${!env}" | gc secrets versions add "$secret" --data-file=- >/dev/null
    echo "secret $secret: new version from \$$env" >&2
  elif [[ -z "$(gc secrets versions list "$secret" --filter=state:ENABLED --limit=1 --format='value(name)')" ]]; then
    echo "secret $secret: NO VALUE YET. Add one: printf %s \"\$$env\" | gcloud secrets versions add $secret --data-file=-" >&2
  else
    echo "secret $secret: has a value" >&2
  fi
}

step_secrets() {
  log "Secret Manager"
  plan_secrets
}

# ---- functions -----------------------------------------------------------------------------------------------------

ENV_FILE=""
write_env_file() {
  ENV_FILE=$(mktemp)
  {
    printf 'GOOGLE_CLOUD_PROJECT: %s\n' "$PROJECT"
    printf 'QORCH_KEY_ENV: live\n'
    for name in "${PLAN_ENVIRONMENT[@]}"; do
      [[ -n "${!name:-}" ]] && printf '%s: %s\n' "$name" "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "${!name}")"
    done
  } >"$ENV_FILE"
}

# NAME TRIGGER MEMORY_MB CPU TIMEOUT_S CONCURRENCY MIN MAX SECRETS (from plan_function)
deploy_function() {
  local name="$1" trigger="$2" memory="$3" cpu="$4" timeout="$5" concurrency="$6" min="$7" max="$8" secrets="$9"
  local args=(functions deploy "$name" --gen2 --region="$REGION" --runtime="$RUNTIME" --source=. --entry-point="$name"
    --service-account="$RUNTIME_SA" --memory="${memory}Mi" --cpu="$cpu" --timeout="${timeout}s"
    --concurrency="$concurrency" --min-instances="$min" --max-instances="$max" --env-vars-file="$ENV_FILE"
    --update-labels=app=qorch)
  if [[ -n "$secrets" ]]; then
    args+=(--set-secrets="$secrets")
  elif exists gc functions describe "$name" --region="$REGION"; then
    args+=(--clear-secrets)
  fi
  local invoker
  if [[ "$trigger" == http ]]; then
    args+=(--trigger-http --no-allow-unauthenticated --ingress-settings=all)
    invoker="$GATEWAY_SA"
  else
    args+=(--trigger-topic="${trigger#topic:}" --trigger-service-account="$TRIGGER_SA")
    invoker="$TRIGGER_SA"
  fi
  gc "${args[@]}" >/dev/null
  gc functions add-invoker-policy-binding "$name" --region="$REGION" --member="serviceAccount:${invoker}" >/dev/null
  echo "function $name: deployed ($trigger)" >&2
}

step_functions() {
  local names=("$@")
  [[ ${#names[@]} -eq 0 ]] && names=("${PLAN_FUNCTIONS[@]}")
  log "Functions: ${names[*]}"
  "$PYTHON" -m tools.gendeploy --check  # the plan must match the code being uploaded
  write_env_file
  local logs; logs=$(mktemp -d)
  local pids=() failed=0
  for name in "${names[@]}"; do
    while (( $(jobs -rp | wc -l) >= PARALLEL )); do sleep 2; done
    ( plan_function "$name" ) >"$logs/$name.log" 2>&1 &
    pids+=("$!:$name")
  done
  for entry in "${pids[@]}"; do
    if ! wait "${entry%%:*}"; then
      failed=1; echo "function ${entry#*:}: FAILED" >&2; cat "$logs/${entry#*:}.log" >&2
    fi
  done
  rm -rf "$logs" "$ENV_FILE"
  return "$failed"
}

# ---- schedules -----------------------------------------------------------------------------------------------------

ensure_schedule() {  # FUNCTION TOPIC CRON
  local job="$1" topic="$2" cron="$3"
  exists gc pubsub topics describe "$topic" || gc pubsub topics create "$topic"
  local common=(--location="$REGION" --schedule="$cron" --topic="$topic" --message-body='{}' --time-zone=Etc/UTC)
  if exists gc scheduler jobs describe "$job" --location="$REGION"; then
    gc scheduler jobs update pubsub "$job" "${common[@]}" >/dev/null
  else
    gc scheduler jobs create pubsub "$job" "${common[@]}" --description="qorch: triggers the $job function" >/dev/null
  fi
  echo "schedule $job: '$cron' → topic $topic" >&2
}

step_schedules() {
  log "Topics and Cloud Scheduler jobs"
  plan_schedules
}

# ---- gateway -------------------------------------------------------------------------------------------------------

step_gateway() {
  log "API Gateway"
  local spec config
  spec=$(mktemp --suffix=.yaml)
  sed -e "s/@PROJECT@/${PROJECT}/g" -e "s/@REGION@/${REGION}/g" infra/api-gateway.yaml >"$spec"
  config="qorch-$(sha256sum "$spec" | cut -c1-12)"  # configs are immutable: one per distinct spec
  exists gc api-gateway apis describe "$API" || gc api-gateway apis create "$API"
  gc services enable "$(gc api-gateway apis describe "$API" --format='value(managedService)')"
  if ! exists gc api-gateway api-configs describe "$config" --api="$API"; then
    gc api-gateway api-configs create "$config" --api="$API" --openapi-spec="$spec" \
      --backend-auth-service-account="$GATEWAY_SA"
  fi
  if exists gc api-gateway gateways describe "$GATEWAY" --location="$REGION"; then
    gc api-gateway gateways update "$GATEWAY" --location="$REGION" --api="$API" --api-config="$config"
  else
    gc api-gateway gateways create "$GATEWAY" --location="$REGION" --api="$API" --api-config="$config"
  fi
  rm -f "$spec"
  echo "gateway: https://$(gc api-gateway gateways describe "$GATEWAY" --location="$REGION" \
    --format='value(defaultHostname)')/v1 (config $config)" >&2
}

step_check() {
  local host
  host=$(gc api-gateway gateways describe "$GATEWAY" --location="$REGION" --format='value(defaultHostname)')
  curl -sS --fail "https://${host}/v1/state-machine" >/dev/null && echo "check: GET /v1/state-machine OK" >&2
}

main() {
  local step="${1:-all}"
  [[ $# -gt 0 ]] && shift
  case "$step" in
    all) step_apis; step_firestore; step_accounts; step_secrets; step_functions; step_schedules; step_gateway
         step_check ;;
    apis|firestore|accounts|secrets|schedules|gateway|check) "step_$step" ;;
    functions) step_functions "$@" ;;
    *) echo "unknown step $step (see the top of $0)" >&2; exit 2 ;;
  esac
}

main "$@"
