#!/usr/bin/env bash
# The README's run command (`make run`, as root): starts a collector with
# its embedded store and an agent on this host, connected over mutual TLS
# on loopback. The agent also prints its events here as JSON lines.
# State (certificates, database, spool) lives in $WATCHPOST_RUN_DIR
# (default .run/ in the checkout), so a second run keeps the history.
#
# Ctrl-C (SIGINT) or SIGTERM stops the agent first and waits until it has
# exited, so that its last events (the final health and agent_stop) are
# stored by the collector; then the collector; then it exits 0. The
# collector and the agent run in sessions of their own: only this script
# receives the terminal's signals and decides the order. `make run` starts
# it through scripts/foreground, so that Ctrl-C reaches this script and
# not make.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/kernel-fs.sh
if [ "$(id -u)" != 0 ]; then
	echo "run: the agent loads BPF programs: run as root" >&2
	exit 1
fi
RUN_DIR=${WATCHPOST_RUN_DIR:-$PWD/.run}
HOST=$(hostname)
INGEST=127.0.0.1:${WATCHPOST_INGEST_PORT:-7443}
QUERY=127.0.0.1:${WATCHPOST_QUERY_PORT:-7444}
mkdir -p "$RUN_DIR" && chmod 700 "$RUN_DIR"

if [ ! -f "$RUN_DIR/pki/ca.pem" ]; then
	bin/watchpost-collector certs --dir "$RUN_DIR/pki" --agents "$HOST" --hosts 127.0.0.1,localhost >/dev/null
fi
cat > "$RUN_DIR/collector.yaml" <<YAML
data_dir: $RUN_DIR/data
ingest:
  listen: $INGEST
  cert_file: $RUN_DIR/pki/server.pem
  key_file: $RUN_DIR/pki/server-key.pem
  client_ca_file: $RUN_DIR/pki/ca.pem
query:
  listen: $QUERY
YAML
cat > "$RUN_DIR/agent.yaml" <<YAML
host: $HOST
output: both
collector:
  address: $INGEST
  agent_id: $HOST
  ca: $RUN_DIR/pki/ca.pem
  cert: $RUN_DIR/pki/agent-$HOST.pem
  key: $RUN_DIR/pki/agent-$HOST-key.pem
spool:
  dir: $RUN_DIR/spool
YAML

# How long the agent may take to detach, drain and ship its last events,
# and the collector to finish its commits.
AGENT_STOP_TIMEOUT=${WATCHPOST_AGENT_STOP_TIMEOUT:-60}
COLLECTOR_STOP_TIMEOUT=${WATCHPOST_COLLECTOR_STOP_TIMEOUT:-30}

wp_mount_kernel_fs
collector_pid=
agent_pid=

# stop_process sends SIGTERM to a pid and waits up to $2 seconds for it to
# exit, then kills it; it returns the process's exit status.
stop_process() {
	local pid=$1 timeout=$2 name=$3 waited=0
	kill -TERM "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do
		if [ "$waited" -ge $((timeout * 10)) ]; then
			echo "run: the $name did not stop within ${timeout}s; killing it" >&2
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.1
		waited=$((waited + 1))
	done
	local rc=0
	wait "$pid" 2>/dev/null || rc=$?
	return "$rc"
}

stopping=
# shutdown stops the agent, then the collector, and exits with $1.
shutdown() {
	local rc=$1
	[ -n "$stopping" ] && return
	stopping=1
	trap '' INT TERM
	if [ -n "$agent_pid" ]; then
		echo "run: stopping the agent (detaching its programs, shipping its last events)" >&2
		stop_process "$agent_pid" "$AGENT_STOP_TIMEOUT" agent || true
		agent_pid=
	fi
	if [ -n "$collector_pid" ]; then
		echo "run: stopping the collector" >&2
		stop_process "$collector_pid" "$COLLECTOR_STOP_TIMEOUT" collector || true
		collector_pid=
	fi
	wp_unmount_kernel_fs
	echo "run: stopped; the store keeps the history in $RUN_DIR/data" >&2
	exit "$rc"
}
trap 'shutdown 0' INT TERM
trap 'if [ -z "$stopping" ]; then shutdown $?; fi' EXIT

setsid bin/watchpost-collector serve --config "$RUN_DIR/collector.yaml" --log-level warn 2>>"$RUN_DIR/collector.log" </dev/null &
collector_pid=$!
for _ in $(seq 100); do
	if (exec 3<>"/dev/tcp/${QUERY%:*}/${QUERY#*:}") 2>/dev/null; then break; fi
	kill -0 "$collector_pid" 2>/dev/null || { echo "run: the collector did not start; see $RUN_DIR/collector.log" >&2; tail -5 "$RUN_DIR/collector.log" >&2; collector_pid=; exit 1; }
	sleep 0.1
done

cat >&2 <<MSG
run: collector on $INGEST (agents, mutual TLS) and $QUERY (queries); store in $RUN_DIR/data
run: agent $HOST is starting; its events stream below as JSON lines. In another shell:
       bin/watchpost hosts                      agents, health and drop counters
       bin/watchpost alerts                     open alerts, newest first
       bin/watchpost events --since 10m         what was stored (--type exec, --path /etc/, --port 502, --json ...)
       bin/watchpost tail                       follow events as they are stored
MSG
echo "       dashboard: http://$QUERY/ui/           (open in a browser on this host)" >&2
echo "run: Ctrl-C stops the agent, then the collector" >&2
# The agent's info logs are left out here; its warnings and errors show.
# The filter ignores the terminal's signals: it must outlive the agent.
setsid bin/watchpost-agent --config "$RUN_DIR/agent.yaml" "$@" </dev/null 2> >(trap '' INT TERM; exec grep --line-buffered -v '"level":"info"' >&2) &
agent_pid=$!
rc=0
wait "$agent_pid" || rc=$?
# The agent ended by itself (an error, or it was killed): stop the collector.
agent_pid=
shutdown "$rc"
