//go:build tools

// Pins the OCI distribution-spec conformance suite that tests/build_conformance.sh builds
// (tests/e2e/test_conformance.py runs it against the registry's pod as the program renders it).
package tools

import _ "github.com/opencontainers/distribution-spec/conformance"
