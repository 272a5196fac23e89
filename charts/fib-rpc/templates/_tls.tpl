{{/* ---------- TLS to the broker ---------- */}}

{{/* "true" when the bundled broker serves amqps (5671) and https management (15671). */}}
{{- define "fib-rpc.tlsActive" -}}
{{- if and .Values.rabbitmq.enabled .Values.rabbitmq.tls.enabled }}true{{ end -}}
{{- end }}

{{/* "true" when the bundled broker also keeps its plaintext 5672 and 15672. */}}
{{- define "fib-rpc.plaintextActive" -}}
{{- if or (not (include "fib-rpc.tlsActive" .)) .Values.rabbitmq.tls.plaintext }}true{{ end -}}
{{- end }}

{{/* The Secret with the bundled broker's tls.crt, tls.key and ca.crt (cert-manager's shape). */}}
{{- define "fib-rpc.tlsSecretName" -}}
{{- .Values.rabbitmq.tls.existingSecret | default (printf "%s-tls" (include "fib-rpc.rabbitmqName" .)) -}}
{{- end }}

{{/* The Secret whose ca.crt the pods and KEDA verify the broker's certificate with; empty: the system CAs. */}}
{{- define "fib-rpc.caSecretName" -}}
{{- if include "fib-rpc.tlsActive" . -}}
{{ include "fib-rpc.tlsSecretName" . }}
{{- else if not .Values.rabbitmq.enabled -}}
{{ .Values.externalRabbitmq.tls.caSecret }}
{{- end -}}
{{- end }}

{{/* The port names the broker's AMQP and management clients use. */}}
{{- define "fib-rpc.rabbitmqAmqpPort" -}}{{ ternary "amqp" "amqps" (not (include "fib-rpc.tlsActive" .)) }}{{- end }}

{{/* Where the pods find the CA. */}}
{{- define "fib-rpc.caFile" -}}/etc/fib-rpc/broker-ca/ca.crt{{- end }}

{{/* env entries of a broker client that verifies the broker with a private CA. Pass $ and the variable name. */}}
{{- define "fib-rpc.caEnv" -}}
{{- if include "fib-rpc.caSecretName" .ctx }}
- name: {{ .name }}
  value: {{ include "fib-rpc.caFile" .ctx | quote }}
{{- end }}
{{- end }}

{{- define "fib-rpc.caVolumeMount" -}}
{{- if include "fib-rpc.caSecretName" . }}
- name: broker-ca
  mountPath: /etc/fib-rpc/broker-ca
  readOnly: true
{{- end }}
{{- end }}

{{/* Only ca.crt of the Secret reaches the pod, never the broker's key. */}}
{{- define "fib-rpc.caVolume" -}}
{{- if include "fib-rpc.caSecretName" . }}
- name: broker-ca
  secret:
    secretName: {{ include "fib-rpc.caSecretName" . }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end }}

{{/* The broker's rabbitmq.conf lines for TLS: amqps and https management from the mounted Secret. */}}
{{- define "fib-rpc.rabbitmqTlsConf" -}}
{{- if include "fib-rpc.tlsActive" . }}

# TLS: amqps on 5671 and the management API on https 15671, with the certificate of Secret
# {{ include "fib-rpc.tlsSecretName" . }}. Clients verify the broker; the broker asks no client certificate.
listeners.ssl.default = 5671
ssl_options.cacertfile = /etc/rabbitmq/tls/ca.crt
ssl_options.certfile = /etc/rabbitmq/tls/tls.crt
ssl_options.keyfile = /etc/rabbitmq/tls/tls.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
management.ssl.port = 15671
management.ssl.cacertfile = /etc/rabbitmq/tls/ca.crt
management.ssl.certfile = /etc/rabbitmq/tls/tls.crt
management.ssl.keyfile = /etc/rabbitmq/tls/tls.key
{{- end }}
{{- end }}

{{/* Checks of the TLS values. */}}
{{- define "fib-rpc.tlsValidate" -}}
{{- $tls := .Values.rabbitmq.tls -}}
{{- if and .Values.rabbitmq.enabled $tls.enabled (not $tls.existingSecret) (not $tls.certManager.enabled) -}}
{{- fail "rabbitmq.tls.enabled needs rabbitmq.tls.existingSecret (a Secret with tls.crt, tls.key and ca.crt) or rabbitmq.tls.certManager.enabled" -}}
{{- end -}}
{{- if and .Values.rabbitmq.enabled $tls.enabled $tls.certManager.enabled (not $tls.existingSecret) -}}
{{- if not (.Capabilities.APIVersions.Has "cert-manager.io/v1") -}}
{{- fail "rabbitmq.tls.certManager.enabled needs cert-manager (the API cert-manager.io/v1 is not served): install it, or give rabbitmq.tls.existingSecret" -}}
{{- end -}}
{{- if not $tls.certManager.issuerRef.name -}}
{{- fail "rabbitmq.tls.certManager.enabled needs rabbitmq.tls.certManager.issuerRef.name (the Issuer or ClusterIssuer that signs the broker's certificate)" -}}
{{- end -}}
{{- end -}}
{{- if and (not $tls.plaintext) (not (and .Values.rabbitmq.enabled $tls.enabled)) -}}
{{- fail "rabbitmq.tls.plaintext=false closes 5672 and 15672, so it needs rabbitmq.tls.enabled=true" -}}
{{- end -}}
{{- end }}

{{/* NetworkPolicy ports of a broker service: the plaintext port and/or its TLS twin. Pass (dict "ctx" $ "port" "amqp" | "management"). */}}
{{- define "fib-rpc.policyPorts" -}}
{{- if include "fib-rpc.plaintextActive" .ctx }}
- port: {{ .port }}
  protocol: TCP
{{- end }}
{{- if include "fib-rpc.tlsActive" .ctx }}
- port: {{ ternary "amqps" "management-tls" (eq .port "amqp") }}
  protocol: TCP
{{- end }}
{{- end }}
