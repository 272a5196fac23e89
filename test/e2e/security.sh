# shellcheck shell=bash
# Least privilege and TLS in the cluster, sourced by test/e2e/checks.sh (its kn, log, fail,
# figure, wait_job, RELEASE, NAMESPACE, CHART, BROKER_POD, SERVER):
#   check_broker_users         the broker has exactly the chart's users, with its tags and permissions
#   check_least_privilege [HOST]  each role's own Secret, in a restricted pod: what it is refused
#                              (test/e2e/probe/least-privilege.mjs); HOST: 5672 and 15672 must refuse
#   make_tls_secret NAME       a CA made here and a broker certificate it signs, as Secret NAME
#   check_tls                  every AMQP connection is TLS, plaintext closed, a client without
#                              the CA exits 6 naming AMQP_TLS_CA_FILE, KEDA reads over https

set -euo pipefail

PROBE_SCRIPT="$ROOT/test/e2e/probe/least-privilege.mjs"

# The Job of the users of the release's current revision, once it has run.
wait_users_job() {
  local revision
  revision=$(helm -n "$NAMESPACE" status "$RELEASE" -o json | jq -r .version)
  wait_job "$RELEASE-broker-users-$revision" 300
}

# The users the chart made the broker hold: the administrator of Secret <release>-rabbitmq and
# the role users of its ConfigMap <release>-broker-users (files/broker-roles.json), nobody else
# (no guest, no user of an earlier chart), each with the tags and permissions rendered.
check_broker_users() {
  local what=$1 admin want have perms rendered
  wait_users_job
  admin=$(kn get secret "$RELEASE-rabbitmq" -o jsonpath='{.data.rabbitmq-username}' | base64 -d)
  rendered=$(kn get configmap "$RELEASE-broker-users" -o jsonpath='{.data.users\.json}')
  want=$(jq -cS --arg admin "$admin" \
    '[{user: $admin, tags: ["administrator"]}] + [.users[] | {user: .name, tags}] | sort_by(.user)' <<<"$rendered")
  have=$(kn exec "$BROKER_POD" -c rabbitmq -- rabbitmqctl -q list_users --formatter json |
    jq -cS '[.[] | {user, tags: (.tags | sort)}] | sort_by(.user)')
  [[ $have == "$want" ]] || fail "$what: the broker's users are $have, the chart's $want"
  perms=$(kn exec "$BROKER_POD" -c rabbitmq -- rabbitmqctl -q list_permissions -p "$(jq -r .vhost <<<"$rendered")" --formatter json |
    jq -cS '[.[] | {user, configure, write, read}] | sort_by(.user)')
  want=$(jq -cS --arg admin "$admin" \
    '[{user: $admin, configure: ".*", write: ".*", read: ".*"}] + [.users[] | {user: .name} + .permissions] | sort_by(.user)' <<<"$rendered")
  [[ $perms == "$want" ]] || fail "$what: the broker's permissions are $perms, the chart's $want"
  echo "$what: the broker has exactly the chart's users: $(jq -r '[.[].user] | join(", ")' <<<"$have")"
}

# probe_job_json NAME JQ-ARGS...: the chart's own client Job (its restricted pod, image, CA
# mount), rendered with the live release's values, named NAME and changed by jq JQ-ARGS.
probe_job_json() {
  local name=$1 values
  shift
  values=$(mktemp)
  helm -n "$NAMESPACE" get values "$RELEASE" -o yaml >"$values"
  helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --values "$values" \
    --set client.job.enabled=true --set client.job.backoffLimit=0 --set client.job.activeDeadlineSeconds=300 \
    --show-only templates/client/job.yaml |
    kn create --dry-run=client -o json -f - |
    jq --arg name "$name" '.metadata.name = $name | .spec.template.metadata.labels["app.kubernetes.io/name"] = "fib-rpc-e2e-probe"
      | .metadata.labels["app.kubernetes.io/name"] = "fib-rpc-e2e-probe"' | jq "$@"
  rm -f "$values"
}

# Waits for Job $1 to succeed or fail (bounded), prints its pod's log; returns its exit code.
finished_job() {
  local job=$1 pod code=""
  for _ in $(seq 1 150); do
    code=$(kn get pods -l "job-name=$job" -o jsonpath='{.items[0].status.containerStatuses[0].state.terminated.exitCode}' 2>/dev/null)
    [[ -n $code ]] && break
    sleep 2
  done
  [[ -n $code ]] || fail "Job $job did not finish within 300 s"
  pod=$(kn get pods -l "job-name=$job" -o name | sed -n 1p)
  kn logs "$pod"
  return "$code"
}

secret_env() { # secret_env VAR SECRET KEY: a JSON env entry
  jq -nc --arg n "$1" --arg s "$2" --arg k "$3" '{name: $n, valueFrom: {secretKeyRef: {name: $s, key: $k}}}'
}

check_least_privilege() {
  local closed=${1:-} job env out code=0 started=$SECONDS
  job="$RELEASE-least-privilege-$(date +%s)"
  log "least privilege: each role's own credentials, in a restricted pod, are refused what is not theirs"
  kn create configmap e2e-least-privilege --from-file=least-privilege.mjs="$PROBE_SCRIPT" \
    --dry-run=client -o yaml | kn apply -f - >/dev/null
  env=$(jq -sc . <<<"$(secret_env CLIENT_URL "$RELEASE-rabbitmq-client" amqp-url)
$(secret_env SERVER_URL "$RELEASE-rabbitmq-server" amqp-url)
$(secret_env KEDA_URL "$RELEASE-rabbitmq-keda" amqp-url)
$(secret_env KEDA_MANAGEMENT_URL "$RELEASE-rabbitmq-keda" management-url)
$(jq -nc --arg q "$(kn get configmap "$SERVER" -o jsonpath='{.data.RPC_QUEUE}')" '{name: "QUEUE", value: $q}')
$(jq -nc --arg h "$closed" '{name: "CLOSED_HOST", value: $h}')")
  # https (fetch) verifies with NODE_EXTRA_CA_CERTS; the chart sets AMQP_TLS_CA_FILE for amqps.
  # shellcheck disable=SC2016 # jq variables
  probe_job_json "$job" --argjson env "$env" '.spec.template.spec.containers[0] |= (
      .command = ["node", "/probe/least-privilege.mjs"] | del(.args)
      | .env = ([.env[] | select(.name != "AMQP_URL")] + $env
          + [.env[] | select(.name == "AMQP_TLS_CA_FILE") | .name = "NODE_EXTRA_CA_CERTS"])
      | .volumeMounts += [{name: "probe", mountPath: "/probe", readOnly: true}])
    | .spec.template.spec.volumes += [{name: "probe", configMap: {name: "e2e-least-privilege"}}]' |
    kn create -f - >/dev/null
  out=$(finished_job "$job") || code=$?
  kn delete job "$job" --wait=false >/dev/null
  kn delete configmap e2e-least-privilege >/dev/null
  out=$(jq -cR 'fromjson? | select(type == "object" and has("refusals"))' <<<"$out" | tail -n 1)
  [[ -n $out ]] || fail "the least-privilege probe printed no result (exit $code)"
  jq -r '.refusals | to_entries[] | "  \(.key): \(.value)"' <<<"$out"
  ((code == 0)) || fail "least privilege does not hold: $(jq -r '.problems | join("; ")' <<<"$out")"
  figure "least-privilege probe: refusals checked / time (s)" "$(jq '.refusals | length' <<<"$out") / $((SECONDS - started))"
}

# A CA of the test's own and a broker certificate it signs for every name the chart's clients
# use (the Service's, the nodes'), as the Secret rabbitmq.tls.existingSecret names.
make_tls_secret() {
  local name=$1 dir domain=cluster.local svc="$RELEASE-rabbitmq"
  dir=$(mktemp -d)
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=fib-rpc e2e CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$svc.$NAMESPACE.svc" \
    -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s,DNS:%s.%s,DNS:%s.%s.svc,DNS:%s.%s.svc.%s,DNS:*.%s-headless.%s.svc.%s\nextendedKeyUsage=serverAuth\n' \
    "$svc" "$svc" "$NAMESPACE" "$svc" "$NAMESPACE" "$svc" "$NAMESPACE" "$domain" "$svc" "$NAMESPACE" "$domain" >"$dir/ext"
  openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 2 \
    -extfile "$dir/ext" -out "$dir/tls.crt" 2>/dev/null
  kn create secret generic "$name" --from-file=tls.crt="$dir/tls.crt" --from-file=tls.key="$dir/tls.key" \
    --from-file=ca.crt="$dir/ca.crt" --dry-run=client -o yaml | kn apply -f - >/dev/null
  rm -rf "$dir"
  echo "Secret $name: a broker certificate for $svc.$NAMESPACE.svc signed by a CA made for this run"
}

check_tls() {
  local conns job out code=0 since ready metric errors
  log "TLS: every AMQP connection is TLS, the plaintext ports refuse"
  conns=$(kn exec "$BROKER_POD" -c rabbitmq -- rabbitmqctl -q list_connections user ssl ssl_protocol --formatter json)
  echo "connections: $(jq -c '[.[] | "\(.user) ssl=\(.ssl) \(.ssl_protocol)"]' <<<"$conns")"
  jq -e 'length > 0 and all(.[]; .ssl == true)' <<<"$conns" >/dev/null ||
    fail "a connection to the broker is not TLS (or there is none): $conns"
  figure "TLS: AMQP connections, all ssl" "$(jq length <<<"$conns")"
  # Least privilege again, over amqps and https, from a pod that also finds 5672 and 15672 of
  # the broker pod closed (a Service without the port would prove nothing).
  check_least_privilege "$(kn get pod "$BROKER_POD" -o jsonpath='{.status.podIP}')"

  log "TLS: a client without the CA fails with exit 6 and names AMQP_TLS_CA_FILE"
  job="$RELEASE-no-ca-$(date +%s)"
  probe_job_json "$job" '.spec.template.spec.containers[0] |= (
      .args = ["--json", "30"] | .env = [.env[] | select(.name != "AMQP_TLS_CA_FILE")]
      | .volumeMounts = [.volumeMounts[] | select(.name != "broker-ca")])
    | .spec.template.spec.volumes = [.spec.template.spec.volumes[] | select(.name != "broker-ca")]' |
    kn create -f - >/dev/null
  out=$(finished_job "$job" 2>&1) || code=$?
  kn delete job "$job" --wait=false >/dev/null
  printf '%s\n' "$out" | tail -n 3
  ((code == 6)) || fail "a client without the CA exited $code, not 6"
  grep -q AMQP_TLS_CA_FILE <<<"$out" || fail "a client without the CA did not name AMQP_TLS_CA_FILE"
  figure "TLS: client without the CA, exit code" "$code"

  log "TLS: KEDA reads the queue depth over https with the TriggerAuthentication's ca"
  since=$(kn get scaledobject "$SERVER" -o jsonpath='{.metadata.creationTimestamp}')
  for _ in $(seq 1 30); do
    ready=$(kn get scaledobject "$SERVER" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')
    metric=$(kn get hpa "keda-hpa-$SERVER" -o jsonpath='{.status.currentMetrics[0].external.current.averageValue}' 2>/dev/null)
    [[ $ready == True && -n $metric ]] && break
    sleep 5
  done
  [[ $ready == True && -n $metric ]] || fail "the ScaledObject is not Ready ($ready) or its HPA reads no queue depth ('$metric')"
  errors=$(kubectl -n keda logs deployment/keda-operator --since-time="$since" 2>/dev/null |
    grep -E "$NAMESPACE" | grep -iE 'x509|certificate|tls' || true)
  [[ -z $errors ]] || fail "KEDA logged TLS errors for $NAMESPACE: $errors"
  echo "ScaledObject Ready, its HPA reads $metric messages per replica; KEDA logged no TLS error"
}

# The chart as 0.2.0 shipped it, before the role users: its broker has one user, the
# administrator, which every pod used. PREVIOUS_CHART_COMMIT names it in this repository's
# history; a clone without it (a shallow checkout) says so and installs this chart only.
PREVIOUS_CHART_COMMIT=${PREVIOUS_CHART_COMMIT:-8de746c}

# Prints the directory of the previous chart, extracted from git; fails without the commit.
previous_chart() {
  local dir
  git -C "$ROOT" cat-file -e "$PREVIOUS_CHART_COMMIT^{commit}" 2>/dev/null || return 1
  dir=$(mktemp -d)
  git -C "$ROOT" archive "$PREVIOUS_CHART_COMMIT" charts/fib-rpc | tar -x -C "$dir"
  echo "$dir/charts/fib-rpc"
}

# install_previous_chart: the 0.2.0 chart with its own e2e values and this run's images; its
# client Job answers and the broker has the administrator alone. The caller's helm_install
# is then the upgrade that must end with exactly this chart's users.
install_previous_chart() {
  local previous started=$SECONDS users
  if ! previous=$(previous_chart); then
    echo "NOT CHECKED: the upgrade from the 0.2.0 chart (commit $PREVIOUS_CHART_COMMIT is not in this clone; fetch the history)"
    return 0
  fi
  log "install of the 0.2.0 chart (commit $PREVIOUS_CHART_COMMIT: one broker user, the administrator)"
  helm upgrade --install "$RELEASE" "$previous" --namespace "$NAMESPACE" --values "$previous/ci/e2e-values.yaml" \
    --values "$E2E_IMAGE_VALUES" --set rabbitmq.persistence.enabled=true --wait --timeout 10m >/dev/null
  check_chart_job_answer
  users=$(kn exec "$BROKER_POD" -c rabbitmq -- rabbitmqctl -q list_users --formatter json | jq -c '[.[].user]')
  echo "the 0.2.0 chart's broker users: $users"
  [[ $(jq length <<<"$users") == 1 ]] || fail "the 0.2.0 chart's broker has users $users, expected its administrator alone"
  rm -rf "$(dirname "$(dirname "$previous")")"
  figure "0.2.0 chart: install to first answer (s)" $((SECONDS - started))
}
