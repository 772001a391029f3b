#!/usr/bin/env bash
# Deploy qorch to a Google Cloud project, from an empty project to a checked deployment in one run. Re-runnable:
# every step creates what is missing and updates what differs; nothing is deleted (except secret access that the
# plan no longer gives). What to create comes from infra/deploy-plan.sh (generated from the code's tables: run
# `make deploy-files` after adding a function, an index or a schedule). See docs/deploy.md.
#
#   PROJECT=my-project [REGION=europe-west1] infra/deploy.sh [STEP ...]
#
# Steps, in the order `all` (the default) runs them (ALL_STEPS below):
#   apis        enable the Google APIs qorch uses; ask for Eventarc's service agent early
#   firestore   the database (native mode), deny-all security rules, indexes, field overrides with their TTL
#   accounts    the service accounts (runtime identities, gateway, trigger, build) and their project roles
#   secrets     the Secret Manager secrets, their values, and which runtime identity may read each; stops the run
#               if a secret has no value (a function that mounts it could not start)
#   topics      the Pub/Sub topics that trigger the event functions (before those functions)
#   functions   every function (2nd gen, python312); `functions NAME...` deploys only those
#   schedules   the Cloud Scheduler jobs that publish to the topics
#   gateway     API Gateway: the public /v1 paths → functions, every path's OPTIONS → cors_preflight
#   check       through the gateway: a public call (2xx proves the gateway's ID token is accepted), a keyed route
#               answered by its function, a CORS preflight
# and, never part of `all`:
#   rollback FUNCTION [REVISION]   serve an earlier revision of one function (default: the one before the newest)
#   rollback-secret SECRET [VERSION]  make an earlier value the newest version again, redeploy its readers
#
# Adding a step (a later component, e.g. `agents` or `hosting`): write `step_NAME() { ... }` below, built from the
# ensure_* helpers (each re-runnable), and put NAME in ALL_STEPS where it must run (e.g. after `functions`).
#
# Environment: PROJECT (required), REGION (functions, scheduler, gateway; default europe-west1),
# FIRESTORE_LOCATION (default eur3; only used when the database is created), PARALLEL (function deploys at once,
# default 4), PYTHON (with the requirements installed; default python3), BUILD_SERVICE_ACCOUNT (an existing account
# for the builds instead of qorch-build), QORCH_CHECK_API_KEY (lets `check` make a keyed call too), RETRY_SECONDS
# (first wait of a retried transient failure, default 5, doubling to 60) and RETRY_ATTEMPTS (default 10: some
# 6 minutes in all); the plain configuration the functions get (PLAN_ENVIRONMENT in infra/deploy-plan.sh, e.g.
# QORCH_S3_BUCKET, QORCH_CORS_ORIGINS); and each secret's value in its environment variable (e.g. STRIPE_API_KEY),
# which the secrets step adds as the secret's newest version when it differs from the current one.
#
# Runs with bash 4.4 or newer and the tools every platform has (no GNU-only options): checked up front.
set -euo pipefail

die() { printf 'deploy.sh: %s\n' "$*" >&2; exit 1; }

if (( BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4) )); then
  die "needs bash 4.4 or newer; this is $BASH_VERSION (macOS ships 3.2). Run it in Cloud Shell, which has bash, \
gcloud, curl and python3 (https://shell.cloud.google.com), or install a current bash (brew install bash)."
fi

cd "$(dirname "$0")/.."
PROJECT="${PROJECT:-}"
REGION="${REGION:-europe-west1}"
FIRESTORE_LOCATION="${FIRESTORE_LOCATION:-eur3}"
PARALLEL="${PARALLEL:-4}"
PYTHON="${PYTHON:-python3}"  # with the project's requirements (make deploy uses .venv/bin/python)
RETRY_SECONDS="${RETRY_SECONDS:-5}"
RETRY_ATTEMPTS="${RETRY_ATTEMPTS:-10}"
RUNTIME=python312
API=qorch
GATEWAY=qorch
ALL_STEPS=(apis firestore accounts secrets topics functions schedules gateway check)

sa_email() { printf '%s@%s.iam.gserviceaccount.com' "$1" "$PROJECT"; }
GATEWAY_SA="$(sa_email qorch-gateway)"
TRIGGER_SA="$(sa_email qorch-trigger)"
BUILD_SA="${BUILD_SERVICE_ACCOUNT:-$(sa_email qorch-build)}"
FIRESTORE_API="https://firestore.googleapis.com/v1/projects/${PROJECT}/databases/(default)"
RULES_API="https://firebaserules.googleapis.com/v1/projects/${PROJECT}"

# Documented transient failures, retried with backoff (see retry):
# a new service account is not yet visible to IAM ("Service account ... does not exist"; Google: 60 s or more);
IAM_PROPAGATION='does not exist'
# creating many Firestore indexes at once: 409 "too much contention" / "cross-transaction contention";
INDEX_CONTENTION='contention|underlying data changed'
# the first Eventarc trigger of a project, before its service agent has its role (Eventarc: "create it again").
EVENTARC_AGENT='Eventarc Service Agent'

# shellcheck source=infra/deploy-plan.sh
source infra/deploy-plan.sh

log() { printf '\n== %s\n' "$*" >&2; }
gc() { gcloud --project="$PROJECT" --quiet "$@"; }
exists() { "$@" >/dev/null 2>&1; }
tmpfile() { mktemp "${TMPDIR:-/tmp}/qorch-deploy.XXXXXX"; }  # the BSD and GNU form alike
tmpdir() { mktemp -d "${TMPDIR:-/tmp}/qorch-deploy.XXXXXX"; }

check_prerequisites() {
  [[ -n "$PROJECT" ]] || die "set PROJECT to the Google Cloud project id"
  local tool missing=()
  for tool in gcloud curl python3 sed grep sort tr mktemp; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  (( ${#missing[@]} == 0 )) || die "missing: ${missing[*]}. Cloud Shell (https://shell.cloud.google.com) has them all."
}

# Run a command; when it fails with output matching PATTERN (a documented transient failure) try again, waiting
# RETRY_SECONDS, then twice as long each time up to 60 s, at most RETRY_ATTEMPTS times. Prints the command's
# output (stdout and stderr together) on success, and on failure to stderr.
retry() {
  local pattern="$1"; shift
  local attempt=1 delay="$RETRY_SECONDS" out status
  while :; do
    status=0
    out=$("$@" 2>&1) || status=$?
    if (( status == 0 )); then
      [[ -z "$out" ]] || printf '%s\n' "$out"
      return 0
    fi
    if (( attempt >= RETRY_ATTEMPTS )) || ! grep -Eqi -- "$pattern" <<<"$out"; then
      printf '%s\n' "$out" >&2
      return "$status"
    fi
    printf '  transient (attempt %s of %s), again in %ss: %s\n' "$attempt" "$RETRY_ATTEMPTS" "$delay" \
      "$(tr '\n' ' ' <<<"${out:0:240}")" >&2
    sleep "$delay"
    attempt=$((attempt + 1))
    delay=$((delay * 2 > 60 ? 60 : delay * 2))
  done
}

TOKEN="" TOKEN_AT=0
token() {  # the deployer's access token, fetched again after 30 minutes (they last an hour)
  if [[ -z "$TOKEN" ]] || (( SECONDS - TOKEN_AT > 1800 )); then
    TOKEN=$(gcloud auth print-access-token)
    TOKEN_AT=$SECONDS
  fi
  printf '%s' "$TOKEN"
}

# A REST call with the deployer's credentials. X-Goog-User-Project bills it to $PROJECT: with end-user credentials
# some APIs (Firebase Rules) refuse a call that names no quota project. Sets API_STATUS and API_BODY; succeeds on
# 2xx only. (Status from -w, not --fail-with-body, which older curls lack.)
API_STATUS="" API_BODY=""
api() {
  local method="$1" url="$2" body="${3:-}" out
  out=$(tmpfile)
  local args=(-sS -g -X "$method" -o "$out" -w '%{http_code}' -H "Authorization: Bearer $(token)"
    -H "X-Goog-User-Project: ${PROJECT}" -H "Content-Type: application/json")
  [[ -z "$body" ]] || args+=(--data "$body")
  API_STATUS=$(curl "${args[@]}" "$url") || API_STATUS=000
  API_BODY=$(cat "$out")
  rm -f "$out"
  [[ "$API_STATUS" == 2* ]]
}

# api, retried while the resource is busy: 409 ABORTED (contention, another operation on it), 429, 5xx, or 400
# FAILED_PRECONDITION (an operation on the same Firestore field still running).
api_retry() {
  local attempt=1 delay="$RETRY_SECONDS"
  while ! api "$@"; do
    if (( attempt >= RETRY_ATTEMPTS )) || ! { [[ "$API_STATUS" =~ ^(409|429|5..)$ ]] ||
        { [[ "$API_STATUS" == 400 ]] && grep -q FAILED_PRECONDITION <<<"$API_BODY"; }; }; then
      printf '%s %s: HTTP %s %s\n' "$1" "$2" "$API_STATUS" "$API_BODY" >&2
      return 1
    fi
    printf '  busy (HTTP %s, attempt %s of %s), again in %ss\n' "$API_STATUS" "$attempt" "$RETRY_ATTEMPTS" \
      "$delay" >&2
    sleep "$delay"
    attempt=$((attempt + 1))
    delay=$((delay * 2 > 60 ? 60 : delay * 2))
  done
}

json_string() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }

# ---- apis ----------------------------------------------------------------------------------------------------------

step_apis() {
  log "Enabling APIs"
  gc services enable cloudfunctions.googleapis.com run.googleapis.com cloudbuild.googleapis.com \
    artifactregistry.googleapis.com eventarc.googleapis.com pubsub.googleapis.com cloudscheduler.googleapis.com \
    firestore.googleapis.com firebaserules.googleapis.com secretmanager.googleapis.com iam.googleapis.com \
    apigateway.googleapis.com servicemanagement.googleapis.com servicecontrol.googleapis.com logging.googleapis.com
  # Eventarc's service agent is made on first use and needs minutes to get its role: ask for it now, long before
  # the first Pub/Sub trigger (whose deploy still retries: Google's documented remedy is to try again).
  if api POST "https://serviceusage.googleapis.com/v1beta1/projects/${PROJECT}/services/eventarc.googleapis.com:generateServiceIdentity"; then
    echo "eventarc service agent: requested" >&2
  else
    echo "eventarc service agent: not requested now (HTTP $API_STATUS); the functions step retries" >&2
  fi
}

# ---- firestore -----------------------------------------------------------------------------------------------------

ensure_index() {  # COLLECTION_GROUP SCOPE FIELD_CONFIG...
  local group="$1" scope="$2" out f; shift 2
  local configs=()
  for f in "$@"; do configs+=(--field-config="$f"); done
  if out=$(retry "$INDEX_CONTENTION" gc firestore indexes composite create --collection-group="$group" \
        --query-scope="$scope" "${configs[@]}" --async 2>&1); then
    echo "index $group ($scope) $*: creating" >&2
  elif grep -qi "already exists" <<<"$out"; then
    echo "index $group ($scope) $*: exists" >&2
  else
    printf '%s\n' "$out" >&2
    return 1
  fi
}

# One field's single-field indexes and TTL policy, in ONE field update when either differs: two updates of the same
# field back to back fail while the first operation runs.
ensure_field() {  # COLLECTION_GROUP FIELD INDEX_CONFIG_JSON ttl|no-ttl
  local group="$1" field="$2" want="$3" ttl="$4" mask body
  local url="${FIRESTORE_API}/collectionGroups/${group}/fields/${field}"
  api GET "$url" || API_BODY='{}'  # a field never configured answers the inherited config (or 404): not ours
  mask=$(python3 - "$API_BODY" "$want" "$ttl" <<'PY'
import json, sys
have, want, ttl = json.loads(sys.argv[1] or "{}"), json.loads(sys.argv[2]), sys.argv[3] == "ttl"
def norm(cfg):
    return sorted(json.dumps({"scope": i.get("queryScope"), "fields": i.get("fields")}, sort_keys=True)
                  for i in cfg.get("indexes", []))
# (JSON omits false: a field with an override has no usesAncestorConfig; one without has it true)
config = have.get("indexConfig", {})
mask = []
if config.get("usesAncestorConfig", False) or norm(config) != norm(want):
    mask.append("indexConfig")
if ("ttlConfig" in have) != ttl:
    mask.append("ttlConfig")
print(",".join(mask))
PY
)
  if [[ -z "$mask" ]]; then
    echo "field $group.$field: as declared" >&2
    return 0
  fi
  body="{\"indexConfig\":${want}"
  [[ "$ttl" != ttl ]] || body+=',"ttlConfig":{}'  # absent from the body (and in the mask): TTL off
  body+="}"
  api_retry PATCH "${url}?updateMask=${mask}" "$body"
  echo "field $group.$field: updating $mask" >&2
}

deploy_rules() {
  local source ruleset current release="projects/${PROJECT}/releases/cloud.firestore"
  source=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' infra/firestore.rules)
  if api GET "${RULES_API}/releases/cloud.firestore"; then
    current=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["rulesetName"])' "$API_BODY")
    if api GET "https://firebaserules.googleapis.com/v1/${current}" && python3 -c '
import json, sys
files = json.loads(sys.argv[1])["source"]["files"]
sys.exit(0 if [f["content"] for f in files] == [json.loads(sys.argv[2])] else 1)' "$API_BODY" "$source"; then
      echo "security rules: ${current} is released and current" >&2
      return 0
    fi
    current=yes
  else
    current=""
  fi
  api POST "${RULES_API}/rulesets" "{\"source\":{\"files\":[{\"name\":\"firestore.rules\",\"content\":${source}}]}}" \
    || die "security rules: HTTP $API_STATUS $API_BODY"
  ruleset=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["name"])' "$API_BODY")
  if [[ -n "$current" ]]; then
    api PATCH "${RULES_API}/releases/cloud.firestore" \
      "{\"release\":{\"name\":\"${release}\",\"rulesetName\":\"${ruleset}\"}}" \
      || die "security rules release: HTTP $API_STATUS $API_BODY"
  else
    api POST "${RULES_API}/releases" "{\"name\":\"${release}\",\"rulesetName\":\"${ruleset}\"}" \
      || die "security rules release: HTTP $API_STATUS $API_BODY"
  fi
  echo "security rules: released ${ruleset}" >&2
}

step_firestore() {
  log "Firestore: database, rules, indexes, field overrides and TTL"
  if ! exists gc firestore databases describe --database='(default)'; then
    gc firestore databases create --location="$FIRESTORE_LOCATION" --type=firestore-native --delete-protection
  fi
  deploy_rules
  plan_firestore
}

# ---- accounts ------------------------------------------------------------------------------------------------------

ensure_account() {  # NAME DESCRIPTION
  exists gc iam service-accounts describe "$(sa_email "$1")" \
    || gc iam service-accounts create "$1" --display-name="$2" >/dev/null
}

grant_project_role() {  # EMAIL ROLE (retried while a new account is not yet visible to IAM)
  retry "$IAM_PROPAGATION" gc projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$1" --role="$2" \
    --condition=None >/dev/null
}

ensure_runtime_account() {  # NAME DESCRIPTION: a functions' identity: Firestore documents, and its secrets (secrets)
  ensure_account "$1" "$2"
  grant_project_role "$(sa_email "$1")" roles/datastore.user
}

step_accounts() {
  log "Service accounts (least privilege)"
  plan_runtime_accounts
  ensure_account qorch-gateway "qorch API Gateway: invokes the HTTP functions"
  ensure_account qorch-trigger "qorch Eventarc trigger: invokes the scheduled functions"
  if [[ -z "${BUILD_SERVICE_ACCOUNT:-}" ]]; then
    # Builds run as this account (--build-service-account): projects made since mid-2024 otherwise build as the
    # Compute Engine default account, which may hold no role at all. What a function build needs, and no more.
    ensure_account qorch-build "qorch function builds: logs, images, function source"
    local role
    for role in roles/logging.logWriter roles/artifactregistry.writer roles/storage.objectAdmin; do
      grant_project_role "$BUILD_SA" "$role"
    done
  fi
  # Secret access is granted per secret (secrets step); invoker rights per function (functions step).
  echo "accounts: ${PLAN_RUNTIME_ACCOUNTS[*]} qorch-gateway qorch-trigger, builds as ${BUILD_SA}" >&2
}

# ---- secrets -------------------------------------------------------------------------------------------------------

MISSING_SECRETS=()

accessors() {  # SECRET: the members that may read it
  gc secrets get-iam-policy "$1" --format=json | python3 -c '
import json, sys
policy = json.load(sys.stdin) or {}
for b in policy.get("bindings", []):
    if b.get("role") == "roles/secretmanager.secretAccessor" and not b.get("condition"):
        print("\n".join(b.get("members", [])))'
}

ensure_secret() {  # SECRET ENV_VAR READER_ACCOUNT...: exactly these runtime accounts may read it
  local secret="$1" env="$2" account; shift 2
  exists gc secrets describe "$secret" || gc secrets create "$secret" --replication-policy=automatic >/dev/null
  if [[ -n "${!env:-}" ]]; then
    if [[ "$(gc secrets versions access latest --secret="$secret" 2>/dev/null || true)" == "${!env}" ]]; then
      echo "secret $secret: unchanged" >&2
    else
      printf '%s' "${!env}" | gc secrets versions add "$secret" --data-file=- >/dev/null
      echo "secret $secret: new version from \$$env" >&2
    fi
  elif [[ -z "$(gc secrets versions list "$secret" --filter=state:ENABLED --limit=1 --format='value(name)')" ]]; then
    MISSING_SECRETS+=("$secret" "$env")
  else
    echo "secret $secret: has a value" >&2
  fi
  for account in "$@"; do
    retry "$IAM_PROPAGATION" gc secrets add-iam-policy-binding "$secret" \
      --member="serviceAccount:$(sa_email "$account")" --role=roles/secretmanager.secretAccessor \
      --condition=None >/dev/null
  done
  # Any other qorch runtime identity loses access (earlier releases ran every function as one that read all).
  local member allowed=" $* "
  for member in $(accessors "$secret"); do
    for account in "${PLAN_RUNTIME_ACCOUNTS[@]}"; do
      if [[ "$member" == "serviceAccount:$(sa_email "$account")" && "$allowed" != *" $account "* ]]; then
        gc secrets remove-iam-policy-binding "$secret" --member="$member" \
          --role=roles/secretmanager.secretAccessor >/dev/null
        echo "secret $secret: $account may no longer read it" >&2
      fi
    done
  done
  echo "secret $secret: readable by ${*:-nobody}" >&2
}

step_secrets() {
  log "Secret Manager"
  MISSING_SECRETS=()
  plan_secrets
  if (( ${#MISSING_SECRETS[@]} )); then
    echo "These secrets have no value yet. A function that mounts one cannot start, so the run stops here." >&2
    local i
    for ((i = 0; i < ${#MISSING_SECRETS[@]}; i += 2)); do
      echo "  ${MISSING_SECRETS[i]}: set ${MISSING_SECRETS[i+1]} and run again, or" \
        "printf %s \"\$VALUE\" | gcloud secrets versions add ${MISSING_SECRETS[i]} --project=$PROJECT --data-file=-" >&2
    done
    return 1
  fi
}

require_secret_values() {  # FUNCTION...: every secret these functions mount has an enabled version
  local secret fn missing=()
  for secret in "${PLAN_SECRETS[@]}"; do
    for fn in $(plan_secret_functions "$secret"); do
      if [[ " $* " == *" $fn "* ]]; then
        [[ -n "$(gc secrets versions list "$secret" --filter=state:ENABLED --limit=1 --format='value(name)' \
          2>/dev/null)" ]] || missing+=("$secret")
        break
      fi
    done
  done
  (( ${#missing[@]} == 0 )) || die "no value in ${missing[*]}: run the secrets step first (docs/deploy.md, step 4)"
}

# ---- topics --------------------------------------------------------------------------------------------------------

ensure_topic() {  # TOPIC
  exists gc pubsub topics describe "$1" || gc pubsub topics create "$1" >/dev/null
  echo "topic $1: exists" >&2
}

step_topics() {
  log "Pub/Sub topics"
  plan_topics
}

# ---- functions -----------------------------------------------------------------------------------------------------

ENV_FILE=""
write_env_file() {
  local name
  ENV_FILE=$(tmpfile)
  {
    printf 'GOOGLE_CLOUD_PROJECT: %s\n' "$PROJECT"
    printf 'QORCH_KEY_ENV: live\n'
    for name in "${PLAN_ENVIRONMENT[@]}"; do
      [[ -z "${!name:-}" ]] || printf '%s: %s\n' "$name" "$(json_string "${!name}")"
    done
  } >"$ENV_FILE"
}

# NAME TRIGGER ACCOUNT MEMORY_MB CPU TIMEOUT_S CONCURRENCY MIN MAX SECRETS (from plan_function)
deploy_function() {
  local name="$1" trigger="$2" account="$3" memory="$4" cpu="$5" timeout="$6" concurrency="$7" min="$8" max="$9"
  local secrets="${10}" invoker
  # --serve-all-traffic-latest-revision: after a rollback pinned traffic to an old revision, a deploy serves the new
  # one again (without it the pin stays and gcloud only warns).
  local args=(functions deploy "$name" --gen2 --region="$REGION" --runtime="$RUNTIME" --source=. --entry-point="$name"
    --service-account="$(sa_email "$account")" --build-service-account="projects/${PROJECT}/serviceAccounts/${BUILD_SA}"
    --memory="${memory}Mi" --cpu="$cpu" --timeout="${timeout}s" --concurrency="$concurrency"
    --min-instances="$min" --max-instances="$max" --env-vars-file="$ENV_FILE" --update-labels=app=qorch
    --serve-all-traffic-latest-revision)
  if [[ -n "$secrets" ]]; then
    args+=(--set-secrets="$secrets")
  else
    args+=(--clear-secrets)  # none it may read (also right for a new function)
  fi
  if [[ "$trigger" == http ]]; then
    args+=(--trigger-http --no-allow-unauthenticated --ingress-settings=all)
    invoker="$GATEWAY_SA"
  else
    ensure_topic "${trigger#topic:}"  # a trigger needs its topic first
    args+=(--trigger-topic="${trigger#topic:}" --trigger-service-account="$TRIGGER_SA")
    invoker="$TRIGGER_SA"
  fi
  retry "$EVENTARC_AGENT" gc "${args[@]}" >/dev/null
  retry "$IAM_PROPAGATION" gc functions add-invoker-policy-binding "$name" --region="$REGION" \
    --member="serviceAccount:${invoker}" >/dev/null
  echo "function $name: deployed ($trigger, runs as $account)" >&2
}

step_functions() {
  local names=("$@") name
  (( ${#names[@]} )) || names=("${PLAN_FUNCTIONS[@]}")
  log "Functions: ${names[*]}"
  "$PYTHON" -m tools.gendeploy --check  # the plan must match the code being uploaded
  require_secret_values "${names[@]}"
  write_env_file
  local work failed=0
  work=$(tmpdir)
  for name in "${names[@]}"; do
    while (( $(jobs -rp | wc -l) >= PARALLEL )); do wait -n || true; done
    # errexit holds inside the subshell, so a failed command ends it before the .ok marker
    ( plan_function "$name" >"$work/$name.log" 2>&1; touch "$work/$name.ok" ) &
  done
  wait || true
  for name in "${names[@]}"; do
    cat "$work/$name.log" >&2
    if [[ ! -e "$work/$name.ok" ]]; then
      failed=1
      echo "function $name: FAILED" >&2
    fi
  done
  rm -rf "$work" "$ENV_FILE"
  return "$failed"
}

# ---- schedules -----------------------------------------------------------------------------------------------------

ensure_schedule() {  # FUNCTION TOPIC CRON
  local job="$1" topic="$2" cron="$3"
  ensure_topic "$topic"
  local common=(--location="$REGION" --schedule="$cron" --topic="$topic" --message-body='{}' --time-zone=Etc/UTC)
  if exists gc scheduler jobs describe "$job" --location="$REGION"; then
    gc scheduler jobs update pubsub "$job" "${common[@]}" >/dev/null
  else
    gc scheduler jobs create pubsub "$job" "${common[@]}" --description="qorch: triggers the $job function" >/dev/null
  fi
  echo "schedule $job: '$cron' → topic $topic" >&2
}

step_schedules() {
  log "Cloud Scheduler jobs"
  plan_schedules
}

# ---- gateway -------------------------------------------------------------------------------------------------------

# The gateway config with each @URL:<function>@ replaced by the function's Cloud Run service URL: the address, and
# the audience of the gateway's ID token, which Cloud Run checks against its own URL (or a custom audience).
gateway_spec() {  # OUT_FILE
  local name url deployed sed_args=()
  deployed=$(gc functions list --regions="$REGION" --v2 --format='value(name.basename(),serviceConfig.uri)')
  for name in $(grep -o '@URL:[A-Za-z0-9_]*@' infra/api-gateway.yaml | sort -u | sed -e 's/^@URL://' -e 's/@$//'); do
    url=$(printf '%s\n' "$deployed" | sed -n "s|^${name}[[:space:]]\{1,\}\(https://.*\)$|\1|p")
    [[ -n "$url" ]] || die "function $name has no service URL: deploy it first (infra/deploy.sh functions)"
    sed_args+=(-e "s|@URL:${name}@|${url}|g")
  done
  sed "${sed_args[@]}" infra/api-gateway.yaml >"$1"
}

step_gateway() {
  log "API Gateway"
  local work spec config
  work=$(tmpdir)
  spec="$work/api-gateway.yaml"
  gateway_spec "$spec"
  # configs are immutable: one per distinct spec
  config="qorch-$(python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest()[:12])' "$spec")"
  exists gc api-gateway apis describe "$API" || gc api-gateway apis create "$API"
  gc services enable "$(gc api-gateway apis describe "$API" --format='value(managedService)')"
  if ! exists gc api-gateway api-configs describe "$config" --api="$API"; then
    retry "$IAM_PROPAGATION" gc api-gateway api-configs create "$config" --api="$API" --openapi-spec="$spec" \
      --backend-auth-service-account="$GATEWAY_SA" >/dev/null
  fi
  if exists gc api-gateway gateways describe "$GATEWAY" --location="$REGION"; then
    if [[ "$(gc api-gateway gateways describe "$GATEWAY" --location="$REGION" \
          --format='value(apiConfig.basename())')" != "$config" ]]; then
      gc api-gateway gateways update "$GATEWAY" --location="$REGION" --api="$API" --api-config="$config" >/dev/null
    fi
  else
    gc api-gateway gateways create "$GATEWAY" --location="$REGION" --api="$API" --api-config="$config" >/dev/null
  fi
  rm -rf "$work"
  echo "gateway: https://$(gc api-gateway gateways describe "$GATEWAY" --location="$REGION" \
    --format='value(defaultHostname)')/v1 (config $config)" >&2
}

# ---- check ---------------------------------------------------------------------------------------------------------

# METHOD URL EXPECTED_STATUS [CURL_ARGS...]: sets PROBE_HEADERS (lower-case names) and PROBE_BODY
PROBE_HEADERS="" PROBE_BODY=""
probe() {
  local method="$1" url="$2" expected="$3" status work attempt=1 delay="$RETRY_SECONDS"; shift 3
  work=$(tmpdir)
  while :; do
    : >"$work/headers"; : >"$work/body"
    status=$(curl -sS -g -X "$method" -D "$work/headers" -o "$work/body" -w '%{http_code}' "$@" "$url") || status=000
    # a gateway just created or updated may not answer (or route) for a minute or two
    [[ "$status" != "$expected" && "$status" =~ ^(000|404|502|503)$ ]] && (( attempt < RETRY_ATTEMPTS )) || break
    printf '  check: %s %s answered %s, again in %ss\n' "$method" "$url" "$status" "$delay" >&2
    sleep "$delay"
    attempt=$((attempt + 1))
    delay=$((delay * 2 > 60 ? 60 : delay * 2))
  done
  PROBE_HEADERS=$(tr 'A-Z' 'a-z' <"$work/headers" | tr -d '\r')
  PROBE_BODY=$(cat "$work/body")
  rm -rf "$work"
  [[ "$status" == "$expected" ]] || die "check: $method $url answered $status, expected $expected: ${PROBE_BODY:0:300}"
}

step_check() {
  log "Check through the gateway"
  local host base origin
  host=$(gc api-gateway gateways describe "$GATEWAY" --location="$REGION" --format='value(defaultHostname)')
  base="https://${host}/v1"
  # The gateway calls the (private) function with an ID token for the function's service URL: a 2xx proves Cloud
  # Run accepts that audience (a wrong one is Cloud Run's own 401, before any code runs).
  probe GET "$base/state-machine" 200
  echo "check: GET /v1/state-machine 200 (gateway → function, authenticated)" >&2
  # A keyed route: the function itself refuses (problem+json), not Cloud Run's IAM.
  probe GET "$base/account" 401
  grep -q '^content-type: application/problem+json' <<<"$PROBE_HEADERS" \
    || die "check: GET /v1/account without a key was not answered by the function: ${PROBE_BODY:0:300}"
  echo "check: GET /v1/account 401 problem+json (answered by get_account)" >&2
  if [[ -n "${QORCH_CHECK_API_KEY:-}" ]]; then
    probe GET "$base/account" 200 -H "Authorization: Bearer ${QORCH_CHECK_API_KEY}"
    echo "check: GET /v1/account 200 with QORCH_CHECK_API_KEY" >&2
  fi
  # A browser's preflight reaches cors_preflight (the gateway itself would answer 405).
  origin="${QORCH_CORS_ORIGINS%%,*}"
  origin="${origin// /}"
  origin="${origin,,}"  # as a browser sends it (the functions normalise the list the same way)
  [[ "$origin" != https://*:443 ]] || origin="${origin%:443}"
  [[ "$origin" != http://*:80 ]] || origin="${origin%:80}"
  if [[ -n "$origin" ]]; then
    probe OPTIONS "$base/workflows" 204 -H "Origin: $origin" -H "Access-Control-Request-Method: POST" \
      -H "Access-Control-Request-Headers: authorization,content-type"
    grep -qF "access-control-allow-origin: ${origin}" <<<"$PROBE_HEADERS" \
      || die "check: the preflight from $origin got no Access-Control-Allow-Origin"
    echo "check: OPTIONS /v1/workflows 204 with CORS headers for $origin" >&2
  else
    probe OPTIONS "$base/workflows" 204 -H "Access-Control-Request-Method: POST"
    echo "check: OPTIONS /v1/workflows 204 (no QORCH_CORS_ORIGINS: no origin is allowed)" >&2
  fi
}

# ---- rollback ------------------------------------------------------------------------------------------------------

step_rollback() {  # FUNCTION [REVISION]
  local name="${1:-}" revision="${2:-}" service
  [[ -n "$name" ]] || die "usage: infra/deploy.sh rollback FUNCTION [REVISION]"
  service=$(gc functions describe "$name" --region="$REGION" --format='value(serviceConfig.service)')
  service="${service##*/}"
  if [[ -z "$revision" ]]; then
    revision=$(gc run revisions list --service="$service" --region="$REGION" \
      --sort-by=~metadata.creationTimestamp --format='value(metadata.name)' | sed -n 2p)
    [[ -n "$revision" ]] || die "function $name has no revision before its newest"
  fi
  gc run services update-traffic "$service" --region="$REGION" --to-revisions="${revision}=100" >/dev/null
  echo "function $name: all traffic on $revision (service $service). It stays there until the next" \
    "'infra/deploy.sh functions $name', which serves the new revision (--serve-all-traffic-latest-revision)." >&2
}

step_rollback_secret() {  # SECRET [VERSION]
  local secret="${1:-}" version="${2:-}" readers
  [[ -n "$secret" ]] || die "usage: infra/deploy.sh rollback-secret SECRET [VERSION]"
  readers=$(plan_secret_functions "$secret")
  if [[ -z "$version" ]]; then
    version=$(gc secrets versions list "$secret" --filter=state:ENABLED --sort-by=~createTime \
      --format='value(name.basename())' | sed -n 2p)
    [[ -n "$version" ]] || die "secret $secret has no enabled version before its newest"
  fi
  # Functions mount `latest`, which is always the newest version: disabling the newest leaves `latest` with no value
  # (instances cannot start), so the earlier value goes back in as the newest version. It never touches the disk.
  gc secrets versions access "$version" --secret="$secret" | gc secrets versions add "$secret" --data-file=- >/dev/null
  echo "secret $secret: the value of version $version is the newest version again; redeploying its readers" >&2
  # shellcheck disable=SC2086 # the readers are words
  step_functions $readers
  echo "secret $secret: rolled back. To retire the bad value: gcloud secrets versions disable N --secret=$secret" >&2
}

# ---- main ----------------------------------------------------------------------------------------------------------

is_step() { [[ " ${ALL_STEPS[*]} " == *" $1 "* ]]; }
is_function() { [[ " ${PLAN_FUNCTIONS[*]} " == *" $1 "* ]]; }

main() {
  check_prerequisites
  (( $# )) || set -- all
  local step s names
  while (( $# )); do
    step="$1"; shift
    case "$step" in
      all) for s in "${ALL_STEPS[@]}"; do "step_$s"; done ;;
      functions)
        names=()
        while (( $# )) && is_function "$1"; do names+=("$1"); shift; done
        step_functions ${names[@]+"${names[@]}"} ;;
      rollback) step_rollback "$@"; return ;;
      rollback-secret) step_rollback_secret "$@"; return ;;
      *) is_step "$step" || die "unknown step '$step' (see the top of $0)"; "step_$step" ;;
    esac
  done
}

main "$@"
