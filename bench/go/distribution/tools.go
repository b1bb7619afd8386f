//go:build tools

// distribution 3.x, the registry:3 image's binary, for bench/s3_storage.py.

package tools

import _ "github.com/distribution/distribution/v3/cmd/registry"
