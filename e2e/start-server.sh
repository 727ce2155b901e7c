#!/usr/bin/env bash
# start-server.sh PORT — seed the end-to-end events (a fresh id per run) and
# serve. Playwright starts this as its webServer and stops it afterwards.
set -euo pipefail
port=$1
cd "$(dirname "$0")/.."
: "${DATABASE_URL:?DATABASE_URL must be set (scripts/test sets it)}"
: "${REDIS_URL:?REDIS_URL must be set}"
bin/seatmap migrate >/dev/null
bin/seatmap seed --event e2e-home --name "E2E Home Concert" --venue "Test Hall" --sections 2 --rows 3 --seats-per-row 5 >/dev/null 2>&1 || true
export STAFF_TOKEN=e2e-staff-token
export SESSION_SECRET=e2e-session-secret-0123456789
export ADMIT_RATE=${ADMIT_RATE:-1000}
exec bin/seatmap serve --addr "127.0.0.1:$port"
