#!/usr/bin/env bash
# Soak test (not in CI): a real watchpost-collector and the real shipper +
# disk spool (scripts/soak, wpsoak) at a fixed event rate for a duration,
# on 127.0.0.1. Prints, every interval, the agent's counters, RSS and CPU
# and the collector's RSS and CPU; at the end, produced vs stored vs
# counted drops (loss = produced - stored - dropped, which must be 0).
#
#   scripts/soak.sh [duration] [rate] [interval]    e.g. scripts/soak.sh 10m 2000 60s
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10m}
RATE=${2:-2000}
INTERVAL=${3:-60s}

work=$(mktemp -d /tmp/wp-soak.XXXXXX)
cpid=""
cleanup() {
	local rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "soak: failed ($rc); agent log:" >&2
		tail -n 5 "$work/agent.log" "$work/collector.log" >&2 || true
	fi
	if [ -n "$cpid" ] && kill -0 "$cpid" 2>/dev/null; then
		kill -TERM "$cpid"
		wait "$cpid" || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/bin/" ./collector/cmd/watchpost-collector ./collector/cmd/watchpost
go build -o "$work/bin/wpsoak" ./scripts/soak
"$work/bin/watchpost-collector" certs --dir "$work/pki" --agents soak-agent --hosts 127.0.0.1 >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ingest="127.0.0.1:$(port)"
query="127.0.0.1:$(port)"
cat >"$work/collector.yaml" <<YAML
data_dir: $work/data
log_level: warn
ingest:
  listen: $ingest
  cert_file: $work/pki/server.pem
  key_file: $work/pki/server-key.pem
  client_ca_file: $work/pki/ca.pem
query:
  listen: $query
YAML
"$work/bin/watchpost-collector" serve --config "$work/collector.yaml" 2>"$work/collector.log" &
cpid=$!

# collector_sample prints the collector's RSS (KiB) and CPU seconds.
collector_sample() {
	local rss cpu
	rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$cpid/status")
	cpu=$(awk '{ s=$0; sub(/.*\) /, "", s); split(s, f, " "); printf "%.2f", (f[12]+f[13])/100 }' "/proc/$cpid/stat")
	echo "$rss $cpu"
}

echo "soak: duration $DURATION, rate $RATE events/s, interval $INTERVAL, collector pid $cpid ($ingest)"
"$work/bin/wpsoak" -collector "$ingest" -pki "$work/pki" -spool "$work/spool" -rate "$RATE" \
	-duration "$DURATION" -interval "$INTERVAL" 2>"$work/agent.log" |
	while IFS= read -r line; do
		case "$line" in
		elapsed_s*) printf '%s\tcollector_rss_kib\tcollector_cpu_s\n' "$line" ;;
		summary*) echo "$line" ;;
		*) read -r crss ccpu < <(collector_sample); printf '%s\t%s\t%s\n' "$line" "$crss" "$ccpu" ;;
		esac
	done | tee "$work/report.tsv"

summary=$(grep '^summary' "$work/report.tsv")
produced=$(sed -n 's/.*produced=\([0-9]*\).*/\1/p' <<<"$summary")
injected=$(sed -n 's/.*injected=\([0-9]*\).*/\1/p' <<<"$summary")
dropped=$(grep -o 'map\[.*\]' <<<"$summary" | grep -o ':[0-9]*' | tr -d ':' | paste -sd+ | bc)
stored=$("$work/bin/watchpost" --server "$query" hosts --json | python3 -c 'import json,sys; print(sum(int(json.loads(l).get("events_stored",0)) for l in sys.stdin))')
alerts=$("$work/bin/watchpost" --server "$query" alerts | tail -n +2 | wc -l)
loss=$((produced + injected - stored - dropped))
echo "result: produced $produced, gap markers $injected, stored $stored, counted drops $dropped, unaccounted loss $loss, alerts $alerts"
[ "$loss" -eq 0 ]
