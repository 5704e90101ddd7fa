#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME (default 10s) each.
#
# Go before 1.27 can end a duration-bounded run with a bare "context deadline
# exceeded" when the deadline races a worker that is still executing an input
# (go.dev/issue/75804). Such a run wrote no failing input. It is told apart
# from a finding by that message alone, no "Failing input written" line, and a
# deterministic replay of the target's seeds and corpus that passes; anything
# else fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
races=0
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "fuzz: $pkg $target ($FUZZTIME)"
		if go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" 2>&1 | tee "$log"; then
			continue
		fi
		if grep -q 'context deadline exceeded' "$log" &&
			! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' "$log"; then
			echo "fuzz: $target ended on the fuzzing deadline race without a failing input; replaying its corpus"
			go test "$pkg" -run "^${target}\$" -count=1
			races=$((races + 1))
			continue
		fi
		echo "fuzz: $pkg $target failed"
		exit 1
	done
done
echo "fuzz: every target passed ($races ended on the deadline race and passed a replay)"
