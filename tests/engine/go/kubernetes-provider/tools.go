//go:build tools

// pulumi-kubernetes' provider plugin. The module's zip lacks the generated
// schema-embed.json and terraform-mapping-embed.json, so toolchain.sh builds
// it from a writable copy (./provider, see the replace in go.mod).
package tools

import _ "github.com/pulumi/pulumi-kubernetes/provider/v4/cmd/pulumi-resource-kubernetes"
