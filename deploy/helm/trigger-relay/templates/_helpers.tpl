{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "trigger-relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "trigger-relay.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "trigger-relay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "trigger-relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trigger-relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "trigger-relay.labels" -}}
helm.sh/chart: {{ include "trigger-relay.chart" . }}
{{ include "trigger-relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: relay
{{- end }}

{{- define "trigger-relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "trigger-relay.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "trigger-relay.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret that `secretEnv` entries given as a plain key refer to. */}}
{{- define "trigger-relay.secretName" -}}
{{- default (include "trigger-relay.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* The relay config, rendered (values.config goes through tpl), then the [api] table from values.api. */}}
{{- define "trigger-relay.config" -}}
{{- tpl .Values.config . }}
{{- with .Values.api }}
{{- if .enabled }}
{{- include "trigger-relay.apiChecks" $ }}

# --- from values.api (the chart writes this table) ---
[api]
enabled = true
{{- if hasKey $.Values.secretEnv .storeKeyEnv }}
store_key = "${ {{- .storeKeyEnv -}} }"
{{- end }}
{{- if hasKey $.Values.secretEnv .tokenSigningKeyEnv }}
token_signing_key = "${ {{- .tokenSigningKeyEnv -}} }"
{{- end }}
{{- range .clients }}

[[api.clients]]
client_id = {{ .clientId | quote }}
client_secret_sha256 = {{ .clientSecretSha256 | quote }}
scopes = [{{ range $i, $s := .scopes }}{{ if $i }}, {{ end }}{{ $s | quote }}{{ end }}]
{{- end }}

[api.store]
{{- if eq .store "nats" }}
kind = "nats"
connection = {{ default "api-store" .nats.connection | quote }}
bucket = {{ .nats.bucket | quote }}
replicas = {{ .nats.replicas }}
storage = {{ .nats.storage | quote }}
{{- if not .nats.connection }}

[sinks.nats.api-store]
servers = [{{ range $i, $s := .nats.servers }}{{ if $i }}, {{ end }}{{ $s | quote }}{{ end }}]
{{- if .nats.tokenEnv }}
token = "${ {{- .nats.tokenEnv -}} }"
{{- end }}
{{- end }}
{{- else if eq .store "kafka" }}
kind = "kafka"
cluster = {{ .kafka.cluster | quote }}
topic = {{ .kafka.topic | quote }}
status_topic = {{ .kafka.statusTopic | quote }}
replication_factor = {{ .kafka.replicationFactor }}
{{- else }}
kind = "file"
path = {{ .file.path | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* What the chart refuses about values.api, with what to do instead. */}}
{{- define "trigger-relay.apiChecks" -}}
{{- $a := .Values.api }}
{{- if regexMatch "(?m)^\\s*\\[api[\\].]" .Values.config }}
{{- fail "api.enabled is true and `config` has an [api] table too: configure the API in values.api only" }}
{{- end }}
{{- if eq $a.store "file" }}
{{- if or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled }}
{{- fail "api.store \"file\" serves one process, and this release runs several (replicaCount > 1 or autoscaling): use api.store \"nats\" so every replica shares the subscriptions" }}
{{- end }}
{{- else }}
{{- if and (eq $a.store "kafka") (not $a.kafka.cluster) }}
{{- fail "api.store \"kafka\" needs api.kafka.cluster: a [sinks.kafka.<name>] of config" }}
{{- end }}
{{- if and (eq $a.store "nats") (not $a.nats.servers) (not $a.nats.connection) }}
{{- fail "api.store \"nats\" needs api.nats.connection (a [sinks.nats.<name>] of config) or api.nats.servers (e.g. [\"nats://nats.messaging:4222\"])" }}
{{- end }}
{{- range $env := list $a.storeKeyEnv $a.tokenSigningKeyEnv }}
{{- if not (hasKey $.Values.secretEnv $env) }}
{{- fail (printf "api.enabled needs the shared key %s from a Secret: add secretEnv.%s (32 bytes or more, e.g. openssl rand -hex 32)" $env $env) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The pod's terminationGracePeriodSeconds: it must outlast the preStop pause plus the relay's drain. */}}
{{- define "trigger-relay.terminationGracePeriodSeconds" -}}
{{- $s := .Values.shutdown }}
{{- $min := add $s.preStopSleepSeconds $s.graceSeconds }}
{{- if kindIs "invalid" $s.terminationGracePeriodSeconds }}
{{- add $min 10 }}
{{- else if le (int $s.terminationGracePeriodSeconds) (int $min) }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%v) must exceed shutdown.preStopSleepSeconds + shutdown.graceSeconds (%v), or the kubelet kills the relay before it has drained" $s.terminationGracePeriodSeconds $min) }}
{{- else }}
{{- $s.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}
