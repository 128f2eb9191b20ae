#!/usr/bin/env bash
# helm-ci.sh: the checks of the Helm chart (helm/kvstore), as CI runs them.
#
#   1. helm      Helm HELM_VERSION, installed with `go install` into GOPATH/bin
#                when missing (no download site is needed: the Go module
#                proxy serves it), reused afterwards
#   2. lint      `helm lint --strict` with the default and other values
#   3. template  renders the chart with the default values and with others
#                (5 nodes, replication 3, 3 gateways; a single node; a
#                NodePort Service, hard anti-affinity), into build/helm/
#   4. refuse    values that must be refused are: replication above
#                node.replicas, an unknown key, a bad enum (values.schema.json)
#   5. validate  every rendered object against the Kubernetes schema that
#                client-go embeds, strict decoding and cross-object rules
#                (helm/validate, built with go)
# No cluster is needed or contacted.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

HELM_VERSION=${HELM_VERSION:-v3.22.0}
CHART=helm/kvstore
OUT=${KV_HELM_OUT:-build/helm}
export PATH=/usr/local/go/bin:${GOPATH:-$HOME/go}/bin:$PATH
GOBIN=$(go env GOPATH)/bin
HELM=$GOBIN/helm

say() { printf '[helm-ci] %s\n' "$*"; }

STEP_NAMES=() STEP_TIMES=()
step() {
    local name=$1 start=$SECONDS
    say "=== $name ==="
    "$2"
    STEP_NAMES+=("$name")
    STEP_TIMES+=($((SECONDS - start)))
}

step_helm() {
    if [ -x "$HELM" ] && "$HELM" version --template '{{.Version}}' 2>/dev/null | grep -q "^${HELM_VERSION%.*}"; then
        say "helm $("$HELM" version --template '{{.Version}}') already in $GOBIN"
        return 0
    fi
    say "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION (a few minutes the first time)"
    go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    "$HELM" version --short
}

# The value sets rendered and validated: name and --set arguments.
VALUE_SETS=(
    "default|"
    "scaled|node.replicas=5,replication=3,gateway.replicas=3"
    "single|node.replicas=1,replication=1,gateway.replicas=1,node.maxUnavailable=0"
    "nodeport|gateway.service.type=NodePort,gateway.service.nodePort=30080,node.antiAffinity=hard,coordinator.minNodes=2,image.tag=test,logLevel=debug"
)

helm_set() { [ -n "$1" ] && printf -- '--set\n%s\n' "$1"; }

step_lint() {
    local entry name set
    for entry in "${VALUE_SETS[@]}"; do
        IFS='|' read -r name set <<<"$entry"
        mapfile -t args < <(helm_set "$set")
        "$HELM" lint --strict "$CHART" "${args[@]}" | sed "s/^/  [$name] /"
    done
}

step_template() {
    local entry name set
    mkdir -p "$OUT"
    for entry in "${VALUE_SETS[@]}"; do
        IFS='|' read -r name set <<<"$entry"
        mapfile -t args < <(helm_set "$set")
        "$HELM" template kv "$CHART" --namespace kvstore "${args[@]}" >"$OUT/$name.yaml"
        say "$OUT/$name.yaml: $(grep -c '^kind:' "$OUT/$name.yaml") objects ($(grep '^kind:' "$OUT/$name.yaml" | sort | uniq -c | awk '{ printf "%s%s %s", sep, $1, $3; sep = ", " }'))"
    done
    # The values reach the objects.
    if ! grep -A1 KV_REPLICATION "$OUT/scaled.yaml" | grep -q 'value: "3"' || ! grep -q 'replicas: 5' "$OUT/scaled.yaml" ||
        ! grep -q 'replicas: 3' "$OUT/scaled.yaml"; then
        say "scaled values did not reach the manifests"
        return 1
    fi
}

# expect_refused WHY ARGS...: helm template must fail, and say WHY.
expect_refused() {
    local why=$1 out
    shift
    if out=$("$HELM" template kv "$CHART" "$@" 2>&1); then
        say "not refused: $*"
        return 1
    fi
    grep -q "$why" <<<"$out" || {
        say "refused, but not for '$why': $out"
        return 1
    }
    say "refused as it should be: $* ($why)"
}

step_refuse() {
    expect_refused "cannot exceed node.replicas" --set replication=4
    expect_refused "cannot exceed node.replicas" --set coordinator.minNodes=9
    expect_refused "additional properties 'replica' not allowed" --set gateway.replica=3
    expect_refused "value must be one of" --set logLevel=loud
    expect_refused "must exceed node.drainSeconds" --set node.drainSeconds=90
    expect_refused "must be below replication" --set replication=1
}

step_validate() {
    local validator=$OUT/kube-validate
    (cd helm/validate && go build -o "$ROOT/$validator" .)
    local entry name
    for entry in "${VALUE_SETS[@]}"; do
        name=${entry%%|*}
        printf '  [%s] ' "$name"
        "$validator" "$OUT/$name.yaml"
    done
}

step helm step_helm
step lint step_lint
step template step_template
step refuse step_refuse
step validate step_validate

say "summary:"
for i in "${!STEP_NAMES[@]}"; do
    printf '  %-10s ok %4ss\n' "${STEP_NAMES[$i]}" "${STEP_TIMES[$i]}"
done
