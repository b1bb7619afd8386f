"""A private image registry for a Kubernetes cluster, with TLS, passwords and node trust."""
