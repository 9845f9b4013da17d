{{/*
The prefix of the cluster-scoped objects' names (ClusterRoles and their bindings):
"tidal" unless fullnameOverride is set. Namespaced objects keep the fixed names of the
kustomize base (tidal-agent, tidal-scaler), which the alert rules and dashboards select on
(job="tidal-agent"); a second install needs its own namespace and fullnameOverride.
*/}}
{{- define "tidal.fullname" -}}
{{- default "tidal" .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object's metadata (not on pod templates or selectors). */}}
{{- define "tidal.labels" -}}
app.kubernetes.io/part-of: tidal
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | quote }}
{{- end -}}

{{- define "tidal.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* scaler.kafkaClusters {name: [host:port, ...]} as --kafka-cluster's `name=a;b,name2=c`. */}}
{{- define "tidal.kafkaClusters" -}}
{{- $out := list -}}
{{- range $name, $bootstrap := . -}}
{{- if not (regexMatch "^[^=,;[:space:]]+$" $name) -}}
{{- fail (printf "scaler.kafkaClusters: %q is not a valid cluster name (no '=', ',', ';' or spaces)" $name) -}}
{{- end -}}
{{- if not (kindIs "slice" $bootstrap) -}}
{{- fail (printf "scaler.kafkaClusters.%s: expected a list of host:port, got %v" $name $bootstrap) -}}
{{- end -}}
{{- $out = append $out (printf "%s=%s" $name (join ";" $bootstrap)) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/*
A Kafka config (agent.kafka.config, scaler.kafka.config) goes into a ConfigMap, which more
people may read than Secrets: an inline sasl.password is refused. Args: the value's name, the
config.
*/}}
{{- define "tidal.noInlinePassword" -}}
{{- $name := index . 0 }}
{{- $config := index . 1 }}
{{- range $i, $c := ($config.clusters | default list) }}
{{- if and $c.sasl $c.sasl.password }}
{{- fail (printf "%s.clusters[%d].sasl.password: would sit in a ConfigMap; put the password in the mounted Secret and name its file in sasl.password_file" $name $i) }}
{{- end }}
{{- end }}
{{- end }}
