{{/* Names and labels shared by every template. */}}
{{- define "watchpost.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "watchpost.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "watchpost.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "watchpost.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "watchpost.selector" -}}
app.kubernetes.io/name: {{ include "watchpost.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "watchpost.collectorHost" -}}
{{- printf "%s-collector.%s.svc" (include "watchpost.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "watchpost.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* The agent's configuration file (agent.yaml). */}}
{{- define "watchpost.agentConfig" -}}
{{- $collector := "" -}}
{{- $serverName := .Values.agent.collectorServerName -}}
{{- if .Values.collector.enabled -}}
{{- $collector = printf "%s:%d" (include "watchpost.collectorHost" .) (int .Values.collector.service.ingestPort) -}}
{{- $serverName = include "watchpost.collectorHost" . -}}
{{- else -}}
{{- $collector = .Values.agent.collectorAddress -}}
{{- end -}}
{{- $cfg := dict
  "host" "${NODE_NAME}"
  "proc_root" (ternary "/host/proc" "/proc" .Values.agent.hostMounts.proc)
  "cgroup_root" (ternary "/host/sys/fs/cgroup" "/sys/fs/cgroup" .Values.agent.hostMounts.cgroup)
  "metrics_addr" (printf "0.0.0.0:%d" (int .Values.agent.metricsPort))
-}}
{{- if $collector -}}
{{- $_ := set $cfg "output" "collector" -}}
{{- $_ := set $cfg "collector" (dict
  "address" $collector
  "agent_id" "${NODE_NAME}"
  "server_name" $serverName
  "ca" "/run/secrets/watchpost/ca.pem"
  "cert" "/run/secrets/watchpost/agent-${NODE_NAME}.pem"
  "key" "/run/secrets/watchpost/agent-${NODE_NAME}-key.pem") -}}
{{- $_ := set $cfg "spool" (dict "dir" "/var/lib/watchpost/spool" "max_bytes" (int64 .Values.agent.spool.maxBytes)) -}}
{{- else -}}
{{- $_ := set $cfg "output" "stdout" -}}
{{- end -}}
{{- $sockets := list -}}
{{- range .Values.agent.runtimeSockets -}}
{{- $sockets = append $sockets (dict "kind" .kind "path" (printf "/run/watchpost/runtime/%s.sock" .name)) -}}
{{- end -}}
{{- $_ := set $cfg "container" (dict "runtimes" $sockets) -}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy .Values.agent.config)) -}}
{{- end -}}

{{/* The collector's configuration file (collector.yaml). */}}
{{- define "watchpost.collectorConfig" -}}
{{- $cfg := dict
  "data_dir" "/var/lib/watchpost-collector"
  "ingest" (dict
    "listen" (printf "0.0.0.0:%d" (int .Values.collector.service.ingestPort))
    "cert_file" "/run/secrets/watchpost/server.pem"
    "key_file" "/run/secrets/watchpost/server-key.pem"
    "client_ca_file" "/run/secrets/watchpost/ca.pem")
-}}
{{- if .Values.collector.queryTokens -}}
{{- $_ := set $cfg "query" (dict
    "listen" (printf "0.0.0.0:%d" (int .Values.collector.service.queryPort))
    "cert_file" "/run/secrets/watchpost/server.pem"
    "key_file" "/run/secrets/watchpost/server-key.pem"
    "tokens" .Values.collector.queryTokens) -}}
{{- else -}}
{{- $_ := set $cfg "query" (dict "listen" (printf "127.0.0.1:%d" (int .Values.collector.service.queryPort))) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy .Values.collector.config)) -}}
{{- end -}}
