#!/usr/bin/env bash
# Run qorch's AI agents on Google Cloud: the agent runner as Cloud Run worker pools (one per role) and the MCP server
# as a private Cloud Run service, from one image (agents/Dockerfile). Re-runnable: each step creates what is missing
# and updates what exists. See docs/agents.md.
#
#   PROJECT=my-project QORCH_API_URL=https://qorch-gw-xxxx.ew.gateway.dev infra/agents.sh [STEP ...]
#
# Steps, in the order `all` (the default) runs them:
#   apis      enable Cloud Run, Cloud Build, Artifact Registry, Secret Manager
#   build     build the image with Cloud Build into Artifact Registry (repository qorch)
#   secrets   the secrets the agents read (qorch-agent-key-<role>, qorch-mcp-agent-key, qorch-anthropic-api-key,
#             qorch-openai-api-key); a value given in the environment (see below) is added as the newest version
#   identity  the service account qorch-agents, allowed to read exactly those secrets
#   runners   one worker pool per role in ROLES: python -m agents.runner --role ROLE --provider PROVIDER ...
#   mcp       the MCP server (streamable HTTP) as a Cloud Run service that refuses unauthenticated callers, its
#             own URL on its Host allow-list
#
# Environment: PROJECT, QORCH_API_URL (required: the API's base URL, the gateway's, without /v1), REGION
# (europe-west1), PROVIDER (anthropic | openai; default anthropic), MODEL (the provider's default if unset),
# OPENAI_API (chat | responses), CONCURRENCY (hand-offs per runner at once; 2), INSTANCES (instances per worker pool;
# 1), ROLES (default: all six agent roles), TAG (image tag; default: the git commit).
# Secret values, only when you want to set them: QORCH_AGENT_KEY_<ROLE> (e.g. QORCH_AGENT_KEY_DEVELOPER),
# QORCH_MCP_AGENT_KEY, ANTHROPIC_API_KEY, OPENAI_API_KEY. They go to Secret Manager, never to the command lines or
# environment of the deployed containers: those get references to the secrets.
set -euo pipefail

cd "$(dirname "$0")/.."
: "${PROJECT:?set PROJECT to the Google Cloud project id}"
REGION="${REGION:-europe-west1}"
PROVIDER="${PROVIDER:-anthropic}"
MODEL="${MODEL:-}"
OPENAI_API="${OPENAI_API:-chat}"
CONCURRENCY="${CONCURRENCY:-2}"
INSTANCES="${INSTANCES:-1}"
ROLES="${ROLES:-Q_ASSISTANT ARCHITECT DEVELOPER TESTER VERIFIER DEVOPS}"
TAG="${TAG:-$(git rev-parse --short HEAD 2>/dev/null || echo latest)}"
REPOSITORY=qorch
IMAGE="${REGION}-docker.pkg.dev/${PROJECT}/${REPOSITORY}/agents:${TAG}"
AGENTS_SA="qorch-agents@${PROJECT}.iam.gserviceaccount.com"
MCP_SERVICE=qorch-mcp

log() { printf '\n== %s\n' "$*" >&2; }
gc() { gcloud --project="$PROJECT" --quiet "$@"; }
exists() { "$@" >/dev/null 2>&1; }
lower() { tr '[:upper:]_' '[:lower:]-' <<<"$1"; }
need_api_url() { : "${QORCH_API_URL:?set QORCH_API_URL to the API base URL (the gateway), without /v1}"; }

provider_secret() {
  case "$PROVIDER" in
    anthropic) echo "ANTHROPIC_API_KEY=qorch-anthropic-api-key:latest" ;;
    openai) echo "OPENAI_API_KEY=qorch-openai-api-key:latest" ;;
    *) echo "PROVIDER must be anthropic or openai" >&2; return 1 ;;
  esac
}

ensure_secret() {  # NAME [VALUE]
  local name="$1" value="${2:-}"
  exists gc secrets describe "$name" || gc secrets create "$name" --replication-policy=automatic
  if [[ -n "$value" ]]; then
    printf '%s' "$value" | gc secrets versions add "$name" --data-file=- >/dev/null
    echo "secret $name: new version" >&2
  else
    echo "secret $name: exists (add a value: gcloud secrets versions add $name --data-file=-)" >&2
  fi
}

step_apis() {
  log "Enabling APIs"
  gc services enable run.googleapis.com cloudbuild.googleapis.com artifactregistry.googleapis.com \
    secretmanager.googleapis.com iam.googleapis.com
}

step_build() {
  log "Building $IMAGE"
  exists gc artifacts repositories describe "$REPOSITORY" --location="$REGION" ||
    gc artifacts repositories create "$REPOSITORY" --location="$REGION" --repository-format=docker
  gc builds submit --region="$REGION" --config=infra/agents.cloudbuild.yaml \
    --ignore-file=infra/agents.gcloudignore --substitutions="_IMAGE=${IMAGE}" .
}

step_secrets() {
  log "Secrets"
  local role var
  for role in $ROLES; do
    var="QORCH_AGENT_KEY_${role}"
    ensure_secret "qorch-agent-key-$(lower "$role")" "${!var:-}"
  done
  ensure_secret qorch-mcp-agent-key "${QORCH_MCP_AGENT_KEY:-}"
  ensure_secret qorch-anthropic-api-key "${ANTHROPIC_API_KEY:-}"
  ensure_secret qorch-openai-api-key "${OPENAI_API_KEY:-}"
}

step_identity() {
  log "Service account qorch-agents"
  exists gc iam service-accounts describe "$AGENTS_SA" ||
    gc iam service-accounts create qorch-agents --display-name="qorch agent runners and MCP server"
  local secret
  for secret in $(for role in $ROLES; do echo "qorch-agent-key-$(lower "$role")"; done) \
      qorch-mcp-agent-key qorch-anthropic-api-key qorch-openai-api-key; do
    gc secrets add-iam-policy-binding "$secret" --member="serviceAccount:${AGENTS_SA}" \
      --role=roles/secretmanager.secretAccessor >/dev/null
  done
}

step_runners() {
  need_api_url
  local role name args secrets
  for role in $ROLES; do
    name="qorch-runner-$(lower "$role")"
    log "Worker pool $name"
    args="agents.runner,--role,${role},--agent-id,${name},--provider,${PROVIDER},--concurrency,${CONCURRENCY}"
    [[ -n "$MODEL" ]] && args+=",--model,${MODEL}"
    [[ "$PROVIDER" == openai ]] && args+=",--openai-api,${OPENAI_API}"
    secrets="QORCH_API_KEY=qorch-agent-key-$(lower "$role"):latest,$(provider_secret)"
    # A worker pool has no URL and no request-driven scaling: the runner pulls its work (claim long poll). SIGTERM
    # on a scale-down or a new revision makes it release what it holds, like Ctrl-C.
    gc beta run worker-pools deploy "$name" --region="$REGION" --image="$IMAGE" --args="$args" \
      --service-account="$AGENTS_SA" --instances="$INSTANCES" --cpu=1 --memory=512Mi \
      --set-env-vars="QORCH_API_URL=${QORCH_API_URL}" --set-secrets="$secrets"
  done
}

step_mcp() {
  need_api_url
  log "MCP server $MCP_SERVICE"
  local env="QORCH_API_URL=${QORCH_API_URL},QORCH_AGENT_ID=${MCP_SERVICE}"
  gc run deploy "$MCP_SERVICE" --region="$REGION" --image="$IMAGE" \
    --args="agents.mcp,--http,--host,0.0.0.0,--stateless" --service-account="$AGENTS_SA" \
    --no-allow-unauthenticated --set-env-vars="$env" --set-secrets="QORCH_API_KEY=qorch-mcp-agent-key:latest"
  # The service answers only to Host headers on its allow-list: its own URL's host (known after the first deploy).
  local url host
  url=$(gc run services describe "$MCP_SERVICE" --region="$REGION" --format='value(status.url)')
  host="${url#https://}"
  gc run services update "$MCP_SERVICE" --region="$REGION" \
    --update-env-vars="QORCH_MCP_ALLOWED_HOSTS=${host}" >/dev/null
  echo "MCP server: ${url}/mcp (IAM: grant roles/run.invoker; locally: gcloud run services proxy ${MCP_SERVICE} --region=${REGION} --port=8765)" >&2
}

steps=("$@")
[[ ${#steps[@]} -eq 0 || "${steps[0]}" == all ]] && steps=(apis build secrets identity runners mcp)
for step in "${steps[@]}"; do
  case "$step" in
    apis | build | secrets | identity | runners | mcp) "step_${step}" ;;
    *) echo "unknown step: $step (apis build secrets identity runners mcp)" >&2; exit 2 ;;
  esac
done
