//go:build tools

// distribution 3.x, the registry:3 image's binary, for every test layer (tests/build_registry.sh).

package tools

import _ "github.com/distribution/distribution/v3/cmd/registry"
