#!/usr/bin/env bash
# Creates (or keeps) the credentials Secret that the plain manifests in k8s/ expect:
# fib-rpc-credentials in namespace fib-rpc with the keys rabbitmq-username, rabbitmq-password,
# amqp-url and management-url. A password already stored is reused, so re-running is safe.
#   k8s/create-secret.sh [NAMESPACE]
set -euo pipefail

NAMESPACE=${1:-fib-rpc}
SECRET=fib-rpc-credentials
USERNAME=fib-rpc
HOST="fib-rpc-rabbitmq.${NAMESPACE}.svc"

kubectl get namespace "$NAMESPACE" >/dev/null 2>&1 || kubectl create namespace "$NAMESPACE"

password=$(kubectl -n "$NAMESPACE" get secret "$SECRET" -o jsonpath='{.data.rabbitmq-password}' 2>/dev/null | base64 -d || true)
if [[ -z "$password" ]]; then
  # 32 alphanumerics: safe inside URLs without escaping.
  password=$(LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 || true)
fi

kubectl -n "$NAMESPACE" create secret generic "$SECRET" \
  --from-literal=rabbitmq-username="$USERNAME" \
  --from-literal=rabbitmq-password="$password" \
  --from-literal=amqp-url="amqp://${USERNAME}:${password}@${HOST}:5672/%2F" \
  --from-literal=management-url="http://${USERNAME}:${password}@${HOST}:15672/%2F" \
  --dry-run=client -o yaml | kubectl apply -f -
