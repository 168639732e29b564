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

{{/* The relay config, rendered (values.config goes through tpl). */}}
{{- define "trigger-relay.config" -}}
{{- tpl .Values.config . }}
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
