//go:build tools

// The Pulumi CLI, built from its module at the pinned tag (see ../../toolchain.sh).
package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
