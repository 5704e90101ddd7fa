#!/usr/bin/env bash
# The README's run command (`make run`, as root): starts a collector with
# its embedded store and an agent on this host, connected over mutual TLS
# on loopback. The agent also prints its events here as JSON lines. Ctrl-C
# stops both. State (certificates, database, spool) lives in $WATCHPOST_RUN_DIR
# (default .run/ in the checkout), so a second run keeps the history.
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

wp_mount_kernel_fs
collector_pid=
cleanup() {
	if [ -n "$collector_pid" ]; then kill -TERM "$collector_pid" 2>/dev/null || true; wait "$collector_pid" 2>/dev/null || true; fi
	wp_unmount_kernel_fs
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bin/watchpost-collector serve --config "$RUN_DIR/collector.yaml" --log-level warn 2>>"$RUN_DIR/collector.log" &
collector_pid=$!
for _ in $(seq 100); do
	if (exec 3<>"/dev/tcp/${QUERY%:*}/${QUERY#*:}") 2>/dev/null; then break; fi
	kill -0 "$collector_pid" 2>/dev/null || { echo "run: the collector did not start; see $RUN_DIR/collector.log" >&2; tail -5 "$RUN_DIR/collector.log" >&2; exit 1; }
	sleep 0.1
done

cat >&2 <<MSG
run: collector on $INGEST (agents, mutual TLS) and $QUERY (queries); store in $RUN_DIR/data
run: agent $HOST is starting; its events stream below as JSON lines. In another shell:
       bin/watchpost hosts                      agents, health and drop counters
       bin/watchpost events --since 10m         what was stored (--type exec, --path /etc/, --port 502, --json ...)
       bin/watchpost tail                       follow events as they are stored
MSG
echo "       dashboard: http://$QUERY/ui/           (open in a browser on this host)" >&2
echo "run: Ctrl-C stops the agent and the collector" >&2
bin/watchpost-agent --config "$RUN_DIR/agent.yaml" "$@" 2> >(grep -v '"level":"info"' >&2 || true)
