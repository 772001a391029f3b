#!/usr/bin/env bash
# Deploy the dashboard (web/) to Firebase Hosting: the usual home of a Firebase Authentication web app. There is no
# build: the folder is uploaded as it is, with a config.json written here that tells the page where the API is and
# which Firebase project signs people in. See docs/deploy.md ("The dashboard").
#
#   PROJECT=my-project API_BASE=https://<gateway host>/v1 FIREBASE_WEB_API_KEY=AIza... infra/deploy-dashboard.sh
#   ... infra/deploy-dashboard.sh --dry-run      # stage it and print what would be deployed, deploy nothing
#
# Environment:
#   PROJECT               the Firebase (= Google Cloud) project; required
#   API_BASE              the API's public base URL ending in /v1 (the API Gateway's); required
#   FIREBASE_WEB_API_KEY  the web app's API key (Firebase console → Project settings → Your apps, or
#                         `firebase apps:sdkconfig web`); public by design, it identifies the project; required
#   AUTH_DOMAIN           default <PROJECT>.firebaseapp.com (or the Hosting site's own domain once it is connected)
#   SITE                  a Hosting site other than the project's default one
#   FIREBASE              the firebase CLI; default node_modules/.bin/firebase (the pinned firebase-tools, npm ci)
#
# Credentials: `firebase login` on a workstation; in CI, GOOGLE_APPLICATION_CREDENTIALS for a service account with
# the "Firebase Hosting Admin" role.
#
# After the first deploy, once, for the Hosting origin (https://<PROJECT>.web.app, and any custom domain):
#   1. the API must allow it: add it to QORCH_CORS_ORIGINS and redeploy the functions;
#   2. Firebase Authentication → Settings → Authorized domains must list it (for Google sign-in and email links);
#   3. the artifacts bucket must allow GET from it (S3 CORS), for the dashboard's previews of text artifacts.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1
: "${PROJECT:?set PROJECT to the Firebase project id}"
: "${API_BASE:?set API_BASE to the API base URL, e.g. https://qorch-xxxx.ew.gateway.dev/v1}"
: "${FIREBASE_WEB_API_KEY:?set FIREBASE_WEB_API_KEY to the Firebase web app API key}"
AUTH_DOMAIN="${AUTH_DOMAIN:-${PROJECT}.firebaseapp.com}"
FIREBASE="${FIREBASE:-node_modules/.bin/firebase}"
case "$API_BASE" in
  https://*/v1) ;;
  *) echo "API_BASE must be an https URL ending in /v1 (got: $API_BASE)" >&2; exit 2 ;;
esac

STAGE="$(mktemp -d "${TMPDIR:-/tmp}/qorch-hosting.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
cp -R web "$STAGE/public"
cp infra/firebase-hosting.json "$STAGE/firebase.json"
# The one file that differs between environments. Written with python so every value is JSON-escaped.
python3 - "$STAGE/public/config.json" "$API_BASE" "$FIREBASE_WEB_API_KEY" "$AUTH_DOMAIN" "$PROJECT" <<'PY'
import json, sys
path, api_base, api_key, auth_domain, project = sys.argv[1:]
with open(path, "w") as f:
    json.dump({"api_base": api_base, "auth_emulator": None,
               "firebase": {"apiKey": api_key, "authDomain": auth_domain, "projectId": project}}, f, indent=2)
PY
if [ -n "${SITE:-}" ]; then
  python3 - "$STAGE/firebase.json" "$SITE" <<'PY'
import json, sys
path, site = sys.argv[1:]
config = json.load(open(path))
config["hosting"]["site"] = site
json.dump(config, open(path, "w"), indent=2)
PY
fi

echo "Staged the dashboard in $STAGE: $(find "$STAGE/public" -type f | wc -l) files; config.json:"
cat "$STAGE/public/config.json"; echo
if [ "$DRY_RUN" = 1 ]; then
  echo "Dry run: nothing deployed."
  exit 0
fi
"$FIREBASE" deploy --only hosting --project "$PROJECT" --config "$STAGE/firebase.json" --non-interactive
echo "Deployed. Remember (once): the Hosting origin in QORCH_CORS_ORIGINS, in Firebase Auth's authorized domains,"
echo "and in the artifacts bucket's CORS rules (see the top of this script)."
