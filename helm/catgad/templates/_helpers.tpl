{{/* Names and labels. */}}
{{- define "catgad.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{- define "catgad.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{- define "catgad.selectorLabels" -}}
app.kubernetes.io/name: {{ include "catgad.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "catgad.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "catgad.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "catgad.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "catgad.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end }}

{{/* Stores whose every replica has its own events: one replica only. */}}
{{- define "catgad.singleReplica" -}}
{{- if has .Values.store.kind (list "sqlite" "memory") }}true{{ end -}}
{{- end }}

{{- define "catgad.usesUrl" -}}
{{- if has .kind (list "postgres" "redis" "nats" "kafka") }}true{{ end -}}
{{- end }}

{{/*
Values the daemon cannot run with fail the render, naming the value: better than a pod that
crash-loops on the same news.
*/}}
{{- define "catgad.check" -}}
{{- $v := .Values -}}
{{- if not (has $v.store.kind (list "sqlite" "memory" "postgres" "redis" "nats")) -}}
{{- fail (printf "catgad: store.kind is %q; expected sqlite, memory, postgres, redis or nats" $v.store.kind) -}}
{{- end -}}
{{- if not (has $v.bus.kind (list "memory" "nats" "kafka")) -}}
{{- fail (printf "catgad: bus.kind is %q; expected memory, nats or kafka" $v.bus.kind) -}}
{{- end -}}
{{- if lt (int $v.replicas) 1 -}}
{{- fail (printf "catgad: replicas is %v; expected 1 or more" $v.replicas) -}}
{{- end -}}
{{- if and (include "catgad.singleReplica" .) (gt (int $v.replicas) 1) -}}
{{- if eq $v.store.kind "sqlite" -}}
{{- fail (printf "catgad: replicas is %d, but the sqlite store has a single writer on one volume: keep replicas at 1, or use a postgres, redis or nats store" (int $v.replicas)) -}}
{{- else -}}
{{- fail (printf "catgad: replicas is %d, but each replica would keep its own memory store: keep replicas at 1, or use a postgres, redis or nats store" (int $v.replicas)) -}}
{{- end -}}
{{- end -}}
{{- if and (gt (int $v.replicas) 1) (eq $v.bus.kind "memory") -}}
{{- fail (printf "catgad: replicas is %d with the in-process memory bus: several replicas share the commands through a broker; set bus.kind to nats or kafka (docs/operations.md, Scaling)" (int $v.replicas)) -}}
{{- end -}}
{{- range $part := list "store" "bus" -}}
{{- $s := index $v $part -}}
{{- if and (include "catgad.usesUrl" $s) (not $s.url) (not $s.existingSecret.name) -}}
{{- fail (printf "catgad: %s.kind %s needs its server's URL: set %s.url or %s.existingSecret.name" $part $s.kind $part $part) -}}
{{- end -}}
{{- end -}}
{{- if and (not $v.auth.tokens) (not $v.insecure) -}}
{{- fail "catgad: no auth.tokens: the API would be open to anyone reaching the Service; declare auth.tokens, or set insecure=true to mean it" -}}
{{- end -}}
{{- $names := dict -}}
{{- range $i, $t := $v.auth.tokens -}}
{{- if not $t.name -}}
{{- fail (printf "catgad: auth.tokens[%d] has no name" $i) -}}
{{- end -}}
{{- if hasKey $names $t.name -}}
{{- fail (printf "catgad: auth.tokens[%d]: the name %q is already used" $i $t.name) -}}
{{- end -}}
{{- $_ := set $names $t.name $t -}}
{{- if not $t.scopes -}}
{{- fail (printf "catgad: auth.tokens[%d] (%s) has no scopes; expected some of commands, read, approve, manage" $i $t.name) -}}
{{- end -}}
{{- end -}}
{{- if $v.serviceMonitor.enabled -}}
{{- $t := index $names $v.serviceMonitor.token -}}
{{- if and (not $t) (not $v.insecure) -}}
{{- fail (printf "catgad: serviceMonitor.token is %q, which is not one of auth.tokens: /metrics needs a token with the read scope" $v.serviceMonitor.token) -}}
{{- end -}}
{{- if and $t (not (has "read" $t.scopes)) -}}
{{- fail (printf "catgad: serviceMonitor.token %q lacks the read scope /metrics needs" $v.serviceMonitor.token) -}}
{{- end -}}
{{- if and $t $t.secret (hasPrefix "sha256:" $t.secret) -}}
{{- fail (printf "catgad: serviceMonitor.token %q is given as a sha256: digest; Prometheus must send the token itself" $v.serviceMonitor.token) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* Where a token's secret is: {name, key} of a Secret. */}}
{{- define "catgad.tokenRef" -}}
{{- $t := index .token -}}
{{- if and $t.existingSecret $t.existingSecret.name -}}
{{- dict "name" $t.existingSecret.name "key" (default "token" $t.existingSecret.key) | toJson -}}
{{- else -}}
{{- dict "name" (include "catgad.fullname" .root) "key" (printf "token-%d" .index) | toJson -}}
{{- end -}}
{{- end }}

{{/* Where a store or bus URL is. */}}
{{- define "catgad.urlRef" -}}
{{- $s := index .root.Values .part -}}
{{- if $s.existingSecret.name -}}
{{- dict "name" $s.existingSecret.name "key" (default "url" $s.existingSecret.key) | toJson -}}
{{- else -}}
{{- dict "name" (include "catgad.fullname" .root) "key" (printf "%s-url" .part) | toJson -}}
{{- end -}}
{{- end }}

{{/* Whether the chart's own Secret holds anything. */}}
{{- define "catgad.ownSecret" -}}
{{- $v := .Values -}}
{{- range $part := list "store" "bus" -}}
{{- $s := index $v $part -}}
{{- if and (include "catgad.usesUrl" $s) (not $s.existingSecret.name) }}true{{ end -}}
{{- end -}}
{{- range $v.auth.tokens -}}
{{- if not (and .existingSecret .existingSecret.name) }}true{{ end -}}
{{- end -}}
{{- end }}

{{/*
The chart's part of the config: format, store, bus and tokens, with `${VAR}` for every URL
and secret (the container's env reads them from Secrets), and the user's config included.
JSON is YAML, and toJson quotes whatever the values hold.
*/}}
{{- define "catgad.config" -}}
{{- $v := .Values -}}
{{- $store := dict "kind" $v.store.kind -}}
{{- if eq $v.store.kind "sqlite" -}}
{{- $_ := set $store "path" "/var/lib/catgad/catgad.db" -}}
{{- $_ := set $store "synchronous" $v.store.synchronous -}}
{{- else if include "catgad.usesUrl" $v.store -}}
{{- $_ := set $store "url" "${CATGAD_STORE_URL}" -}}
{{- end -}}
{{- with $v.store.options }}{{ $_ := set $store "options" . }}{{ end -}}
{{- $bus := dict "kind" $v.bus.kind -}}
{{- if include "catgad.usesUrl" $v.bus -}}
{{- $_ := set $bus "url" "${CATGAD_BUS_URL}" -}}
{{- end -}}
{{- with $v.bus.options }}{{ $_ := set $bus "options" . }}{{ end -}}
# Written by the catgad chart: the store, the bus and the access tokens; app.yaml holds the
# service's own config (the chart's `config` value). `${VAR}`s are the pod's env, from Secrets.
catgad: 1
include: [app.yaml]
store: {{ toJson $store }}
bus: {{ toJson $bus }}
{{- if $v.auth.tokens }}
service:
  auth:
    tokens:
{{- range $i, $t := $v.auth.tokens }}
      - {{ dict "name" $t.name "secret" (printf "${CATGAD_TOKEN_%d}" $i) "scopes" $t.scopes | toJson }}
{{- end }}
{{- end }}
{{- end }}

{{- define "catgad.dataVolume" -}}
{{- if eq .Values.store.kind "sqlite" }}data{{ else }}scratch{{ end -}}
{{- end }}
