#!/usr/bin/env bash
# MO beside Kannel: the team's shared harness (../shared/bench beside the project;
# HARNESS=path/to/run.sh for another) drives Kannel's MO
# (a-kannel-mo: HTTP SMSC -> bearerbox -> smsbox -> post-url on the fake app), the bare
# Starlette app (c2-bare-uvloop), SQLite group commit with synchronous=FULL
# (f2-group-full) and smshost (p-smshost-mo) in one invocation, with the same wrk
# settings and pinning (server on core 0, wrk and the sinks on core 1).
#
# smshost takes the harness's Twilio-form webhooks on a twilio broker instance (no auth
# token: the harness does not sign), stores each, routes it by one default route to the
# webhook sink, which POSTs it (JSON, HMAC-signed) to the fake app that counts what
# arrives: "delivered" is what reached the app, as for Kannel's post-url.
#
#   bench/kannel_mo.sh                      # one run, ~2 minutes
#   RUNS=3 bench/kannel_mo.sh               # three
#   DURATION=20 CONC=64 bench/kannel_mo.sh  # the harness's other settings pass through
#   HTTP_CLIENT=curl bench/kannel_mo.sh     # the webhook sink on libcurl ([outbox] http_client)
#
# Tables go to stdout; raw JSON and scratch files to $OUT (default: a new temp dir).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
HARNESS="${HARNESS:-$(dirname "$ROOT")/shared/bench/run.sh}"
OUT="${OUT:-$(mktemp -d /tmp/kannel-mo.XXXXXX)}"
PORT=23100
SMSHOST="$ROOT/.venv/bin/smshost"

[ -x "$SMSHOST" ] || { echo "error: $SMSHOST missing; run 'make test' or 'make run' once" >&2; exit 2; }
[ -f "$HARNESS" ] || { echo "error: the shared harness $HARNESS is missing" >&2; exit 2; }

CFG="$OUT/config"
mkdir -p "$CFG" "$OUT/plugins/brokers"
# The harness fills its body templates with {T} (T + digits) and {N} only, so its
# MessageSid cannot have Twilio's form (SM + 32 hex digits), which the shipped twilio
# definition checks (pattern="..."). The bench serves a copy of that definition
# without its patterns, from a plugin folder that replaces the shipped one by stem:
# the same parsing and signature path, less a few regex matches (~1 us per MO).
sed -E 's/ pattern="[^"]*"//g' "$ROOT/plugins/brokers/twilio.xml" > "$OUT/plugins/brokers/twilio.xml"
cp "$ROOT/plugins/brokers/twilio.py" "$OUT/plugins/brokers/twilio.py"
cat > "$CFG/smshost.toml" <<TOML
# written by bench/kannel_mo.sh
[server]
data_dir = "$OUT/data"
public_url = "http://127.0.0.1:$PORT"
shutdown_timeout = 10

[[listeners]]
name = "bench"
host = "127.0.0.1"
port = $PORT
api = true

[api]
token = "kannel-mo-bench"

[purge]
enabled = false

[logging]
level = "WARNING"

[plugins]
dirs = ["$OUT/plugins"]
entry_points = false
TOML
# HTTP_CLIENT=curl: the webhook sink's deliveries through libcurl ([outbox] http_client)
[ -n "${HTTP_CLIENT:-}" ] && printf '\n[outbox]\nhttp_client = "%s"\n' "$HTTP_CLIENT" >> "$CFG/smshost.toml"
cat > "$CFG/brokers.toml" <<TOML
# written by bench/kannel_mo.sh; MT is never used (discard port)
[[brokers]]
name = "twilio-bench"
definition = "twilio"
encryption = "http"

[brokers.mt]
gateway = "http://127.0.0.1:9"

[[brokers.accounts]]
id = "main"
login = "AC0123456789abcdef0123456789abcdef"
local_address = "+15550001111"
TOML
cat > "$CFG/routes.toml" <<TOML
# written by bench/kannel_mo.sh: every MO to the harness's fake app
[[inbound]]
name = "default"
destination = "webhook"
target = "app"
default = true
TOML
cat > "$CFG/sinks.toml" <<TOML
# written by bench/kannel_mo.sh
[webhook]
max_in_flight = 64

[webhook.targets.app]
url = "http://127.0.0.1:23080/mo"
secret = "kannel-mo-bench"
TOML
"$SMSHOST" check --config "$CFG" >/dev/null

# The harness's default Twilio form, with MessageSid unique across its warm-up and
# measurement (its {N} restarts at 0 in each wrk run; {T} is the send time in us).
BODY='ToCountry=US&ToState=CA&SmsMessageSid=SM{T}n{N}&NumMedia=0&ToCity=&FromZip='
BODY+='&SmsSid=SM{T}n{N}&FromState=CA&SmsStatus=received&FromCity='
BODY+='&Body={T}+hello+world+this+is+a+test+message&FromCountry=US'
BODY+='&To=%2B15550001111&ToZip=&NumSegments=1&MessageSid=SM{T}n{N}'
# SENDERS=many: each request from its own number (+1555 then {N}), so that smshost's
# router, which keeps each conversation in order, routes them side by side; the
# default, one sender for every message, is the harness's own shape.
FROM='%2B15551234567'
[ "${SENDERS:-one}" = many ] && FROM='%2B1555{N}'
BODY+="&AccountSid=AC0123456789abcdef0123456789abcdef&From=$FROM"
BODY+='&ApiVersion=2010-04-01'

export PRODUCT_LABEL=smshost
export PRODUCT_START_CMD="$SMSHOST serve --config $CFG --data $OUT/data"
export PRODUCT_READY_URL="http://127.0.0.1:$PORT/health"
export PRODUCT_MO_URL="http://127.0.0.1:$PORT/twilio/mo"
export PRODUCT_MO_BODY="$BODY"
export BENCH_OUT="$OUT/results" BENCH_WORK="$OUT/work"
echo "# smshost $(git -C "$ROOT" rev-parse --short HEAD); scratch and JSON in $OUT" >&2
bash "$HARNESS" --only a-kannel-mo,c2-bare-uvloop,f2-group-full,p-smshost-mo "$@"
