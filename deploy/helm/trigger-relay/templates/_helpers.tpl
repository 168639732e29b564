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
{{- if $.Values.isc.enabled }}

# The ISC sync Job's read-only token (values.isc): `isc sync` reads the relay's routes, `isc test` its statuses.
[[api.tokens]]
name = "isc-sync"
token = "${TRIGGER_RELAY_API_TOKEN}"
scopes = ["sp:trigger-service-subscriptions:read", "sp:trigger-service-invocation-status:read"]
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

{{/* The ISC sync Job's config: the relay's config (the same template, so the same ingress credentials, admin
port and API tokens) followed by the [isc] table from values.isc. Only `trigger-relay isc` reads [isc], but the
relay interpolates every ${VAR} of its file, so the relay's own config.toml leaves [isc] out: the relay pods never
need the tenant's OAuth client. */}}
{{- define "trigger-relay.iscConfig" -}}
{{- include "trigger-relay.iscChecks" . }}
{{- include "trigger-relay.config" . }}
{{- with .Values.isc }}

# --- from values.isc (the chart writes this table; only `trigger-relay isc` reads it) ---
[isc]
tenant_url = {{ trimSuffix "/" .tenantUrl | quote }}
client_id = "${ISC_CLIENT_ID}"
client_secret = "${ISC_CLIENT_SECRET}"
public_url = {{ include "trigger-relay.iscPublicUrl" $ | quote }}
credential = {{ .credential | quote }}
{{- if include "trigger-relay.iscRelayApi" $ }}
relay_api_url = {{ include "trigger-relay.iscRelayApiUrl" $ | quote }}
relay_api_token = "${TRIGGER_RELAY_API_TOKEN}"
{{- end }}
instance = {{ .instance | quote }}
push_filters = {{ .pushFilters }}
{{- end }}
{{- end }}

{{/* The relay's ingress as ISC calls it: isc.publicUrl, or https://<ingress.host><ingress.path without /events>. */}}
{{- define "trigger-relay.iscPublicUrl" -}}
{{- if .Values.isc.publicUrl }}
{{- trimSuffix "/" .Values.isc.publicUrl }}
{{- else if and .Values.ingress.enabled .Values.ingress.host }}
{{- printf "https://%s%s" .Values.ingress.host (trimSuffix "/" .Values.ingress.path | trimSuffix "/events") }}
{{- else }}
{{- fail "isc.enabled needs isc.publicUrl (the relay's ingress as ISC calls it, e.g. https://relay.example.com), or ingress.enabled with ingress.host to derive it from" }}
{{- end }}
{{- end }}

{{/* "true" when the relay serves its Triggers API (values.api, or an [api] table of `config`): `isc sync` then reads
the relay's routes there (API-created subscriptions included) and `isc test` its statuses; else `isc sync` reads
the config file's subscriptions and never calls the relay. */}}
{{- define "trigger-relay.iscRelayApi" -}}
{{- if or .Values.api.enabled (regexMatch "(?m)^\\s*\\[api[\\].]" .Values.config) }}true{{ end }}
{{- end }}

{{/* The relay's Triggers API as the sync Job reaches it: isc.relayApiUrl, or the admin Service. */}}
{{- define "trigger-relay.iscRelayApiUrl" -}}
{{- if .Values.isc.relayApiUrl }}
{{- trimSuffix "/" .Values.isc.relayApiUrl }}
{{- else }}
{{- printf "%s://%s-admin.%s.svc:%v" (ternary "https" "http" (ne .Values.tls.adminSecretName "")) (include "trigger-relay.fullname" .) .Release.Namespace .Values.adminService.port }}
{{- end }}
{{- end }}

{{/* What the chart refuses about values.isc, with what to do instead. */}}
{{- define "trigger-relay.iscChecks" -}}
{{- $i := .Values.isc }}
{{- if not $i.tenantUrl }}
{{- fail "isc.enabled needs isc.tenantUrl: the tenant's API base URL, e.g. https://acme.api.identitynow.com" }}
{{- end }}
{{- if regexMatch "(?m)^\\s*\\[isc[\\].]" .Values.config }}
{{- fail "isc.enabled is true and `config` has an [isc] table too: configure it in values.isc only" }}
{{- end }}
{{- range $env := list "ISC_CLIENT_ID" "ISC_CLIENT_SECRET" "TRIGGER_RELAY_API_TOKEN" }}
{{- if hasKey $.Values.secretEnv $env }}
{{- fail (printf "secretEnv.%s: with isc.enabled the chart sets %s from isc.secrets; remove it from secretEnv" $env $env) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Secret holding the ISC sync Job's credentials: isc.secrets.existingSecret, or the default Secret. */}}
{{- define "trigger-relay.iscSecretName" -}}
{{- default (include "trigger-relay.secretName" .) .Values.isc.secrets.existingSecret }}
{{- end }}

{{/* One env entry from a key of the isc Secret: (list $ "ENV_NAME" "key"). */}}
{{- define "trigger-relay.iscSecretEnv" -}}
{{- $root := index . 0 }}
{{- $name := index . 1 }}
{{- $key := index . 2 }}
{{- if and $root.Values.secrets.create (not $root.Values.isc.secrets.existingSecret) (not (hasKey $root.Values.secrets.data $key)) }}
{{- fail (printf "isc.secrets: %s comes from key %q of the chart-created Secret, which secrets.data does not have: add it, or set isc.secrets.existingSecret" $name $key) }}
{{- end }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "trigger-relay.iscSecretName" $root }}
      key: {{ $key }}
{{- end }}

{{/* The env of every container that loads the relay's config: secretEnv from Secrets, then extraEnv. */}}
{{- define "trigger-relay.configEnv" -}}
{{- $defaultSecret := include "trigger-relay.secretName" . }}
{{- range $name, $ref := .Values.secretEnv }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      {{- if kindIs "string" $ref }}
      {{- if and $.Values.secrets.create (not (hasKey $.Values.secrets.data $ref)) }}
      {{- fail (printf "secretEnv.%s refers to key %q, which secrets.data does not have: add it, or give { secretName, key }" $name $ref) }}
      {{- end }}
      name: {{ $defaultSecret }}
      key: {{ $ref }}
      {{- else }}
      name: {{ required (printf "secretEnv.%s.secretName is required" $name) $ref.secretName }}
      key: {{ required (printf "secretEnv.%s.key is required" $name) $ref.key }}
      {{- end }}
{{- end }}
{{- if and .Values.isc.enabled (include "trigger-relay.iscRelayApi" .) }}
{{- include "trigger-relay.iscSecretEnv" (list . "TRIGGER_RELAY_API_TOKEN" .Values.isc.secrets.relayApiTokenKey) | nindent 0 }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of the ISC sync Jobs and their pods. The name label differs from the relay's, so no Service,
NetworkPolicy, PodDisruptionBudget or the Deployment ever selects a sync pod. */}}
{{- define "trigger-relay.iscSyncSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-isc-sync" (include "trigger-relay.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "trigger-relay.iscSyncLabels" -}}
helm.sh/chart: {{ include "trigger-relay.chart" . }}
{{ include "trigger-relay.iscSyncSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: isc-sync
app.kubernetes.io/part-of: {{ include "trigger-relay.name" . }}
{{- end }}

{{/* The pod template of the ISC sync Job and CronJob: `trigger-relay isc sync` on the ConfigMap's isc.toml. */}}
{{- define "trigger-relay.iscSyncPod" -}}
metadata:
  {{- with .Values.isc.sync.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  labels:
    {{- include "trigger-relay.iscSyncLabels" . | nindent 4 }}
    {{- with .Values.isc.sync.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  restartPolicy: Never
  serviceAccountName: {{ include "trigger-relay.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: isc-sync
      image: {{ include "trigger-relay.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["isc", "sync"{{ if .Values.isc.sync.dryRun }}, "--dry-run"{{ end }}, "--config", "/etc/trigger-relay/isc.toml"]
      env:
        - name: TRIGGER_RELAY_CONFIG
          value: /etc/trigger-relay/isc.toml
        {{- include "trigger-relay.iscSecretEnv" (list . "ISC_CLIENT_ID" .Values.isc.secrets.clientIdKey) | nindent 8 }}
        {{- include "trigger-relay.iscSecretEnv" (list . "ISC_CLIENT_SECRET" .Values.isc.secrets.clientSecretKey) | nindent 8 }}
        {{- include "trigger-relay.configEnv" . | trim | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      resources:
        {{- toYaml .Values.isc.sync.resources | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/trigger-relay
          readOnly: true
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: config
      configMap:
        name: {{ include "trigger-relay.fullname" . }}
    - name: tmp
      emptyDir:
        sizeLimit: 16Mi
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* Exit 1 (needs a fix: config invalid, credentials or a change refused) fails the Job at once: retrying would
fail the same way, and the log says why. Exit 3 (try again: unreachable, 5xx, rate limited) and crashes are
retried up to backoffLimit; a node drain does not count against it. */}}
{{- define "trigger-relay.iscSyncFailurePolicy" -}}
podFailurePolicy:
  rules:
    - action: FailJob
      onExitCodes:
        containerName: isc-sync
        operator: In
        values: [1]
    - action: Ignore
      onPodConditions:
        - type: DisruptionTarget
{{- end }}
