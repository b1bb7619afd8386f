// etcd's server, as its own main package does it; the etcd module's main
// package lives in a module (go.etcd.io/etcd/v3) that Kubernetes does not pin.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
