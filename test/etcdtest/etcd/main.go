// Command etcd is the etcd server the tests start: etcd's own main, built
// at the version test/etcdtest's go.mod pins (the server's module cannot be
// installed with go install: it has replace directives).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
