#!/usr/bin/env bash
# Times the README's first steps as a new user meets them: a fresh clone of
# this checkout's HEAD in a temporary directory, empty Go module and build
# caches, then `make run` on a terminal until the first event is printed
# and served to the dashboard, then SIGTERM to make. As root:
#
#   scripts/first-run.sh            prints the timeline; the README's figures come from it
#
# Ports 17443/17444 (WATCHPOST_INGEST_PORT/QUERY_PORT to change them); the
# clone and its caches are removed at the end (KEEP=1 keeps them).
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d /tmp/wp-first-run.XXXX)
[ "${KEEP:-}" = 1 ] || trap 'chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT
export GOCACHE=$T/gocache GOMODCACHE=$T/gomod GOPATH=$T/gopath GOFLAGS=-modcacherw
mkdir -p "$GOCACHE" "$GOMODCACHE"
export WATCHPOST_INGEST_PORT=${WATCHPOST_INGEST_PORT:-17443} WATCHPOST_QUERY_PORT=${WATCHPOST_QUERY_PORT:-17444}
t0=$(date +%s.%N)
ts() { printf '%6.1f s  %s\n' "$(echo "$(date +%s.%N) - $t0" | bc)" "$*"; }
echo "$(nproc) CPUs, $(go version | awk '{print $3}'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
git clone -q "$src" "$T/watchpost" && ts "cloned $(git -C "$T/watchpost" log --oneline -1 | cut -c1-60)"
cd "$T/watchpost"
log=$T/terminal.log
script -qfc "make run" "$log" </dev/null >/dev/null 2>&1 &
spid=$!
built= event= dash=
while kill -0 $spid 2>/dev/null; do
	if [ -z "$built" ] && grep -qa "^run: collector on" "$log" 2>/dev/null; then
		built=1
		ts "built and collector started ($(grep -ca '^go: downloading' "$log") modules downloaded)"
	fi
	if [ -z "$event" ] && grep -qa '^{"type":' "$log" 2>/dev/null; then event=1; ts "first event in the terminal"; fi
	if [ -z "$dash" ] && curl -sf "http://127.0.0.1:$WATCHPOST_QUERY_PORT/ui/api/events?limit=5" 2>/dev/null | grep -q '"header"'; then
		dash=1
		ts "events served to the dashboard"
	fi
	[ -n "$event" ] && [ -n "$dash" ] && break
	sleep 0.5
done
kill -TERM "$(pgrep -P $spid -x make)"
wait $spid
ts "stopped (SIGTERM to make): $(grep -ca '^{"type":' "$log") events printed"
grep -aE "Error|make: \*\*\*" "$log" && echo "error lines above"
echo "module cache $(du -sh "$GOMODCACHE" | cut -f1), of which downloads $(du -sh "$GOMODCACHE/cache/download" | cut -f1); build cache $(du -sh "$GOCACHE" | cut -f1); load average $(cut -d' ' -f1-3 /proc/loadavg)"
