#!/usr/bin/env bash
# Builds the real Pulumi engine, its Kubernetes provider and a Kubernetes
# control plane from Go modules, or reuses them, and prints the folder that
# holds the binaries.
#
#   tests/engine/toolchain.sh          build what is missing, print the folder
#   tests/engine/toolchain.sh --dir    print the folder only (nothing is built)
#
# Everything comes from the Go module proxy; nothing else is downloaded. The
# pins are the go.mod/go.sum files under tests/engine/go/, so the folder's name
# changes whenever a pin does, and a second run with the same pins takes
# seconds. The cache lives outside the repository, in $REGISTRY_ENGINE_CACHE
# (default ~/.cache/registry-engine). CONTRIBUTING.md says how long a first
# build takes.
#
# Some parts of the chain are not served by the module proxy this project's
# machines reach; the build probes them and records the proxy's answer in
# UNAVAILABLE next to the binaries, which the engine tests report.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
modules=$here/go
cache=${REGISTRY_ENGINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/registry-engine}
key=$(cat "$0" "$modules"/*/go.mod "$modules"/*/go.sum "$modules"/control-plane/etcd/main.go | sha256sum | cut -c1-16)
bin=$cache/$key/bin

if [ "${1:-}" = --dir ]; then
  echo "$bin"
  exit 0
fi
if [ -f "$bin/.complete" ]; then
  echo "$bin"
  exit 0
fi

PULUMI_VERSION=v3.274.0
KUBERNETES_VERSION=v1.36.3
# pulumi-kubernetes' provider module has no tags of its own; this commit
# (2026-01-15, the 4.25 release line) is the one version of it the proxy serves.
KUBERNETES_PROVIDER_VERSION=v4.0.0-20260115033456-f47bc2d6f199
KUBERNETES_PROVIDER_MODULE=github.com/pulumi/pulumi-kubernetes/provider/v4

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local
src=$cache/$key/src
mkdir -p "$bin" "$src"

say() { printf 'toolchain: %s\n' "$*" >&2; }

# Copies one wrapper module into the cache; builds run there, never in the repo.
stage() {
  local name=$1
  rm -rf "${src:?}/$name"
  cp -R "$modules/$name" "$src/$name"
}

build_pulumi() {
  [ -x "$bin/pulumi" ] && return 0
  say "building pulumi $PULUMI_VERSION"
  stage pulumi
  (cd "$src/pulumi" && go build -o "$bin/pulumi" \
    -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" \
    github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
}

build_kubernetes_provider() {
  [ -x "$bin/pulumi-resource-kubernetes" ] && return 0
  say "building pulumi-resource-kubernetes $KUBERNETES_PROVIDER_VERSION"
  stage kubernetes-provider
  local zip_dir version=${KUBERNETES_PROVIDER_VERSION#v}
  zip_dir=$(cd "$src" && go mod download -json "$KUBERNETES_PROVIDER_MODULE@$KUBERNETES_PROVIDER_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  cp -R "$zip_dir" "$src/kubernetes-provider/provider"
  chmod -R u+w "$src/kubernetes-provider/provider"
  # What the provider's own `go generate` (cmd/pulumi-resource-kubernetes/generate.go)
  # writes: the committed schema with the version set, and the mapping as is.
  (cd "$src/kubernetes-provider/provider/cmd/pulumi-resource-kubernetes" && VERSION=$version python3 -c '
import json, os
schema = json.load(open("schema.json"))
schema["version"] = os.environ["VERSION"]
json.dump(schema, open("schema-embed.json", "w"))
json.dump(json.load(open("terraform-mapping.json")), open("terraform-mapping-embed.json", "w"))
')
  (cd "$src/kubernetes-provider" && go build -o "$bin/pulumi-resource-kubernetes" \
    -ldflags "-X $KUBERNETES_PROVIDER_MODULE/pkg/version.Version=$version" \
    "$KUBERNETES_PROVIDER_MODULE/cmd/pulumi-resource-kubernetes")
}

build_control_plane() {
  local missing=0 name
  for name in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kwok etcd; do
    [ -x "$bin/$name" ] || missing=1
  done
  [ "$missing" = 0 ] && return 0
  say "building kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy $KUBERNETES_VERSION, kwok and etcd"
  stage control-plane
  local minor=${KUBERNETES_VERSION#v1.}
  minor=${minor%%.*}
  # Without these, clients (pulumi-kubernetes among them) read the server as
  # version 0.0 and change what they do.
  local ldflags="-X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION"
  ldflags="$ldflags -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  (cd "$src/control-plane" && go build -o "$bin/" -ldflags "$ldflags" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy \
    sigs.k8s.io/kwok/cmd/kwok &&
    go build -o "$bin/etcd" ./etcd)
  # kwok plays kubelets by stages it reads from its config; these are the
  # project's own "fast" stages, from the same module zip.
  local kwok_dir
  kwok_dir=$(cd "$src/control-plane" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  # (No KwokConfiguration document: one given in a file gets no defaults.)
  local stage
  for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
    pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    printf -- '---\n'
    cat "$kwok_dir/kustomize/stage/$stage.yaml"
  done > "$bin/kwok.yaml"
}

# crictl, the CRI's client, for the real node's containerd: a module of its own.
build_crictl() {
  [ -x "$bin/crictl" ] && return 0
  say "building crictl $(awk '$1 == "require" && $2 == "sigs.k8s.io/cri-tools" { print $3 }' "$modules/crictl/go.mod")"
  stage crictl
  (cd "$src/crictl" && go build -o "$bin/crictl" sigs.k8s.io/cri-tools/cmd/crictl)
}

# The parts the chain needs that the proxy does not serve. Each line is the
# module and the proxy's own answer, so a later machine can tell whether that
# changed (delete the folder to probe again).
probe_unavailable() {
  local module out
  : > "$bin/UNAVAILABLE"
  for module in \
    github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3 \
    github.com/pulumi/pulumi-tls/provider/v5 \
    github.com/pulumi/pulumi-random/provider/v4 \
    github.com/pulumi/pulumi-command/provider; do
    if out=$(cd "$src" && GOFLAGS=-mod=mod go list -m -versions "$module" 2>&1); then
      say "now served, worth building: $out"
    else
      printf '%s: %s\n' "$module" "$(printf '%s' "$out" | tr '\n\t' '  ')" >> "$bin/UNAVAILABLE"
    fi
  done
  [ -s "$bin/UNAVAILABLE" ] && sed 's/^/toolchain: not served: /' "$bin/UNAVAILABLE" >&2
  return 0
}

build_pulumi
build_kubernetes_provider
build_control_plane
build_crictl
probe_unavailable
{
  echo "pulumi $PULUMI_VERSION"
  echo "pulumi-resource-kubernetes $KUBERNETES_PROVIDER_VERSION"
  echo "kubernetes $KUBERNETES_VERSION"
  echo "kwok $(cd "$src/control-plane" && go list -m -f '{{.Version}}' sigs.k8s.io/kwok)"
  echo "etcd $(cd "$src/control-plane" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
  echo "crictl $(cd "$src/crictl" && go list -m -f '{{.Version}}' sigs.k8s.io/cri-tools)"
} > "$bin/VERSIONS"
touch "$bin/.complete"
echo "$bin"
