{{/*
Names. With the release name "gateway" (or one containing it) every object
is called exactly like its kustomize counterpart in k8s/ ("gateway",
"gateway-config", "gateway-secrets", "gateway-local").
*/}}
{{- define "gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gateway.fullname" -}}
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

{{- define "gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: never change them after the first install (selectors are immutable). */}}
{{- define "gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "gateway.labels" -}}
helm.sh/chart: {{ include "gateway.chart" . }}
{{ include "gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ include "gateway.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gateway
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gateway.configMapName" -}}
{{- printf "%s-config" (include "gateway.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret the pods read GATEWAY_* variables from. */}}
{{- define "gateway.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else }}
{{- printf "%s-secrets" (include "gateway.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "gateway.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "gateway.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "gateway.imageTag" .) }}
{{- end }}
{{- end }}

{{/* Port of a "host:port" listen address ("0.0.0.0:8080", "[::]:8080"), else the default. */}}
{{- define "gateway.portOf" -}}
{{- $listen := index . 0 }}
{{- if $listen }}
{{- splitList ":" (toString $listen) | last | int }}
{{- else }}
{{- index . 1 }}
{{- end }}
{{- end }}

{{/* The proxy port: the port of settings.server.listen (8080 when unset). */}}
{{- define "gateway.proxyPort" -}}
{{- $server := .Values.settings.server | default dict }}
{{- include "gateway.portOf" (list $server.listen 8080) }}
{{- end }}

{{/* The admin port (/metrics, /health*): the port of settings.admin.listen (9090 when unset). */}}
{{- define "gateway.adminPort" -}}
{{- $admin := .Values.settings.admin | default dict }}
{{- include "gateway.portOf" (list $admin.listen 9090) }}
{{- end }}

{{/* The container's resources: daemonset.resources in DaemonSet mode (unless null). */}}
{{- define "gateway.resources" -}}
{{- if and (include "gateway.isDaemonSet" .) (not (kindIs "invalid" .Values.daemonset.resources)) }}
{{- toYaml .Values.daemonset.resources }}
{{- else }}
{{- toYaml (.Values.resources | default dict) }}
{{- end }}
{{- end }}

{{- define "gateway.priorityClassCreated" -}}
{{- if and (include "gateway.isDaemonSet" .) .Values.daemonset.priorityClass.create (not .Values.priorityClassName) }}
{{- default (printf "%s-node-agent" (include "gateway.fullname" .)) .Values.daemonset.priorityClass.name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "gateway.priorityClassName" -}}
{{- default (include "gateway.priorityClassCreated" .) .Values.priorityClassName }}
{{- end }}

{{- define "gateway.isDaemonSet" -}}
{{- if eq .Values.kind "DaemonSet" }}true{{ end }}
{{- end }}

{{/* "0", 0 and "0%" are zero. */}}
{{- define "gateway.isZero" -}}
{{- if or (eq (toString .) "0") (eq (toString .) "0%") }}true{{ end }}
{{- end }}

{{/*
Refuses combinations that would deploy but not work. Called by the workload
template, so `helm template`, `helm lint` and `helm install` all stop with
the message.
*/}}
{{- define "gateway.validate" -}}
{{- $server := .Values.settings.server | default dict }}
{{- $shutdown := $server.shutdown_timeout_secs | default 30 | int }}
{{- $sleep := .Values.preStop.sleepSeconds | int }}
{{- $grace := .Values.terminationGracePeriodSeconds | int }}
{{- if le $grace (add $shutdown $sleep) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed preStop.sleepSeconds (%d) + settings.server.shutdown_timeout_secs (%d): the grace period includes the preStop hook, and the kubelet kills the gateway when it runs out, cutting the drain short" $grace $sleep $shutdown) }}
{{- end }}
{{- $cpu := dig "limits" "cpu" "" (include "gateway.resources" . | fromYaml) }}
{{- if and $cpu (not (regexMatch "^[1-9][0-9]*$" (toString $cpu))) }}
{{- fail (printf "resources.limits.cpu must be a whole number of cores (got %v): GATEWAY_SERVER__WORKERS comes from it through the downward API, which rounds up (1500m would give 2 workers on 1.5 cores)" $cpu) }}
{{- end }}
{{- if .Values.hostPort.enabled }}
{{- if not (include "gateway.isDaemonSet" .) }}
{{- fail "hostPort.enabled needs kind: DaemonSet (with a Deployment, two replicas on one node, or a surge pod, could not both bind the host port)" }}
{{- end }}
{{- $ru := .Values.daemonset.updateStrategy.rollingUpdate | default dict }}
{{- if and (eq (toString .Values.daemonset.updateStrategy.type) "RollingUpdate") (not (include "gateway.isZero" ($ru.maxSurge | default 0))) }}
{{- fail "hostPort.enabled needs daemonset.updateStrategy.rollingUpdate.maxSurge: 0 (and a maxUnavailable such as \"10%\"): a surge pod cannot bind the host port its predecessor holds on the same node, so it would stay Pending and the rollout would stall" }}
{{- end }}
{{- end }}
{{- if eq (toString .Values.daemonset.updateStrategy.type) "RollingUpdate" }}
{{- $ru := .Values.daemonset.updateStrategy.rollingUpdate | default dict }}
{{- if and (include "gateway.isZero" ($ru.maxSurge | default 0)) (include "gateway.isZero" ($ru.maxUnavailable | default 0)) }}
{{- fail "daemonset.updateStrategy.rollingUpdate: maxSurge and maxUnavailable cannot both be zero" }}
{{- end }}
{{- end }}
{{- if and .Values.networkPolicy.enabled .Values.networkPolicy.hostNetworkIngress.enabled (not .Values.networkPolicy.hostNetworkIngress.nodeCIDRs) (not .Values.networkPolicy.hostNetworkIngress.namespaceSelector) }}
{{- fail "networkPolicy.hostNetworkIngress.enabled needs nodeCIDRs (the address ranges of your nodes) or a namespaceSelector" }}
{{- end }}
{{- range $k, $v := .Values.secrets }}
{{- if not (regexMatch "^GATEWAY_[A-Z0-9_]+$" $k) }}
{{- fail (printf "secrets: key %q is not a GATEWAY_<SECTION>__<KEY> name: every key becomes an environment variable, and the gateway refuses unknown GATEWAY_* settings" $k) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The pod template, shared by the Deployment and the DaemonSet. */}}
{{- define "gateway.podTemplate" -}}
metadata:
  labels:
    {{- include "gateway.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/component: proxy
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- $annotations := dict }}
  {{- if .Values.rollOnSettingsChange }}
  {{- $_ := set $annotations "checksum/settings" (toYaml .Values.settings | sha256sum) }}
  {{- end }}
  {{- if not .Values.existingSecret }}
  {{- $_ := set $annotations "checksum/secret" (toYaml .Values.secrets | sha256sum) }}
  {{- end }}
  {{- with .Values.podAnnotations }}
  {{- $annotations = merge (deepCopy .) $annotations }}
  {{- end }}
  {{- with $annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "gateway.serviceAccountName" . }}
  automountServiceAccountToken: false
  # REQUIRED: service links would inject GATEWAY_SERVICE_HOST, GATEWAY_PORT,
  # ... for a Service named "gateway", and the gateway reads every GATEWAY_*
  # variable as a setting: it would refuse to start ("port: unknown key").
  enableServiceLinks: false
  # > preStop sleep + settings.server.shutdown_timeout_secs + margin (the
  # chart refuses to render otherwise).
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with include "gateway.priorityClassName" . }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if or .Values.defaultTopologySpread .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- if .Values.defaultTopologySpread }}
    - maxSkew: 1
      topologyKey: topology.kubernetes.io/zone
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "gateway.selectorLabels" . | nindent 10 }}
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "gateway.selectorLabels" . | nindent 10 }}
    {{- end }}
    {{- with .Values.topologySpreadConstraints }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
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
  containers:
    - name: gateway
      image: {{ include "gateway.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - --config
        - /etc/gateway/production.yaml
        {{- with .Values.extraArgs }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: http
          containerPort: {{ include "gateway.proxyPort" . }}
          {{- if .Values.hostPort.enabled }}
          hostPort: {{ .Values.hostPort.port }}
          {{- end }}
          protocol: TCP
        - name: admin
          containerPort: {{ include "gateway.adminPort" . }}
          protocol: TCP
      env:
        # One actix worker per core of the CPU limit. The downward API
        # rounds up (limit 1500m -> 2), so keep the limit a whole number.
        - name: GATEWAY_SERVER__WORKERS
          valueFrom:
            resourceFieldRef:
              containerName: gateway
              resource: limits.cpu
              divisor: "1"
        # Where the pod runs, as OpenTelemetry resource attributes on
        # every exported span (used only with tracing on). Names outside
        # GATEWAY_*, so the settings loader ignores them.
        - name: K8S_NAMESPACE_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        - name: K8S_POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: K8S_NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
        - name: OTEL_RESOURCE_ATTRIBUTES
          value: k8s.namespace.name=$(K8S_NAMESPACE_NAME),k8s.pod.name=$(K8S_POD_NAME),k8s.node.name=$(K8S_NODE_NAME)
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      # Secrets as GATEWAY_* settings (existingSecret, or the chart's Secret
      # from .Values.secrets).
      envFrom:
        - secretRef:
            name: {{ include "gateway.secretName" . }}
        {{- with .Values.extraEnvFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with include "gateway.resources" . | fromYaml }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.startupProbe }}
      startupProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.livenessProbe }}
      livenessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.readinessProbe }}
      readinessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      lifecycle:
        # Keep serving while the endpoint removal reaches kube-proxy, ingress
        # controllers and load balancers; only then SIGTERM starts the drain.
        preStop:
          {{- if .Values.preStop.sleepAction }}
          sleep:
            seconds: {{ .Values.preStop.sleepSeconds }}
          {{- else }}
          exec:
            command:
              - /bin/sleep
              - {{ .Values.preStop.sleepSeconds | quote }}
          {{- end }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: config
          mountPath: /etc/gateway
          readOnly: true
        - name: tmp
          mountPath: /tmp
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "gateway.configMapName" . }}
    - name: tmp
      emptyDir:
        sizeLimit: {{ .Values.tmpSizeLimit }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
