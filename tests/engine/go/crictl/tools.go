//go:build tools

// crictl, the CRI's own client, to see what kubelet asked of a real node's
// containerd (tests/support/real_node.py). A module of its own: it requires
// Kubernetes' modules at another version than the control plane pins.
package tools

import _ "sigs.k8s.io/cri-tools/cmd/crictl"
