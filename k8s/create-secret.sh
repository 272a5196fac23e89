#!/usr/bin/env bash
# Creates (or keeps) the credentials Secrets that the plain manifests in k8s/ expect, in
# namespace fib-rpc: fib-rpc-credentials, the broker's administrator (rabbitmq-username,
# rabbitmq-password), read by the broker and the users Job only; and one per role,
# fib-rpc-credentials-server, -client and -keda (password, amqp-url; keda also management-url),
# whose users the Job fib-rpc-broker-users-1 makes on the broker. A password already stored is
# reused, so re-running is safe; to rotate one, delete its Secret, run this again, then re-run
# the Job (kubectl delete job fib-rpc-broker-users-1, and apply k8s/ again).
#   k8s/create-secret.sh [NAMESPACE]
set -euo pipefail

NAMESPACE=${1:-fib-rpc}
SECRET=fib-rpc-credentials
USERNAME=fib-rpc
HOST="fib-rpc-rabbitmq.${NAMESPACE}.svc"

kubectl get namespace "$NAMESPACE" >/dev/null 2>&1 || kubectl create namespace "$NAMESPACE"

# The stored password under KEY of Secret NAME, or 32 new alphanumerics (safe inside URLs).
password_of() {
  local stored
  stored=$(kubectl -n "$NAMESPACE" get secret "$1" -o jsonpath="{.data.$2}" 2>/dev/null | base64 -d || true)
  if [[ -n "$stored" ]]; then echo "$stored"; else LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 || true; fi
}

apply() { kubectl -n "$NAMESPACE" create secret generic "$@" --dry-run=client -o yaml | kubectl apply -f -; }

apply "$SECRET" \
  --from-literal=rabbitmq-username="$USERNAME" \
  --from-literal=rabbitmq-password="$(password_of "$SECRET" rabbitmq-password)"

for role in server client keda; do
  user="$USERNAME-$role"
  password=$(password_of "$SECRET-$role" password)
  urls=(--from-literal=amqp-url="amqp://${user}:${password}@${HOST}:5672/%2F")
  if [[ $role == keda ]]; then urls+=(--from-literal=management-url="http://${user}:${password}@${HOST}:15672/%2F"); fi
  apply "$SECRET-$role" --from-literal=username="$user" --from-literal=password="$password" "${urls[@]}"
done
