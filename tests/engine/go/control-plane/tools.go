//go:build tools

// A Kubernetes control plane for tests: the API server, controller manager and
// scheduler, etcd at the version Kubernetes itself requires, and kwok, which
// plays the kubelets; and a real node's kubelet and kube-proxy, of the same
// version (tests/support/real_node.py).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
