{{/*
_helpers.tpl: names, labels and shared pieces of the kvstore chart.
*/}}

{{/* The release-qualified base name, at most 63 characters. */}}
{{- define "kvstore.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of one component: coordinator, node, node-headless, gateway. */}}
{{- define "kvstore.component" -}}
{{- printf "%s-%s" (include "kvstore.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "kvstore.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component (root, component). */}}
{{- define "kvstore.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kvstore.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The coordinator's endpoints, as nodes and gateways reach them. */}}
{{- define "kvstore.coordinator" -}}
{{- printf "tcp://%s:%v" (include "kvstore.component" (dict "root" . "name" "coordinator")) .Values.coordinator.port -}}
{{- end -}}
{{- define "kvstore.coordinatorPub" -}}
{{- printf "tcp://%s:%v" (include "kvstore.component" (dict "root" . "name" "coordinator")) .Values.coordinator.pubPort -}}
{{- end -}}

{{/* optionalEnv NAME VALUE: an env entry, only when VALUE is set, so the
process's own default applies otherwise. */}}
{{- define "kvstore.optionalEnv" -}}
{{- if and (ne (toString .value) "") (ne (toString .value) "<nil>") }}
- name: {{ .name }}
  value: {{ .value | quote }}
{{- end }}
{{- end -}}

{{/* Pod-level settings every pod shares. */}}
{{- define "kvstore.podCommon" -}}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* Refuses settings that cannot work, before anything is deployed. */}}
{{- define "kvstore.validate" -}}
{{- if gt (int .Values.replication) (int .Values.node.replicas) -}}
{{- fail (printf "replication (%v) cannot exceed node.replicas (%v)" .Values.replication .Values.node.replicas) -}}
{{- end -}}
{{- if and .Values.coordinator.minNodes (gt (int .Values.coordinator.minNodes) (int .Values.node.replicas)) -}}
{{- fail (printf "coordinator.minNodes (%v) cannot exceed node.replicas (%v): the cluster would never start" .Values.coordinator.minNodes .Values.node.replicas) -}}
{{- end -}}
{{- if and (not (kindIs "string" .Values.node.maxUnavailable)) (ge (int .Values.node.maxUnavailable) (int .Values.replication)) -}}
{{- fail (printf "node.maxUnavailable (%v) must be below replication (%v): a drain could take every copy of a partition" .Values.node.maxUnavailable .Values.replication) -}}
{{- end -}}
{{- if le (int .Values.node.terminationGracePeriodSeconds) (int .Values.node.drainSeconds) -}}
{{- fail "node.terminationGracePeriodSeconds must exceed node.drainSeconds" -}}
{{- end -}}
{{- end -}}
