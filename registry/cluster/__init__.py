"""Reading the stack's cluster before anything is created: registry/cluster/checks.py."""
