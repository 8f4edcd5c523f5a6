// Command nicmux-ipamd is nicmux-ipam whole: the CNI IPAM plugin that keeps
// one address pool across every node in etcd (run with CNI_COMMAND set),
// its commands (nicmux-ipamd help), and the node daemon (nicmux-ipamd
// serve) that holds the etcd connections and answers the calls of
// nicmux-ipam, the thin plugin a chain names.
package main

import (
	"os"

	"github.com/nicmux/nicmux/ipam"
	"github.com/nicmux/nicmux/ipam/etcd"
)

func main() {
	os.Exit(ipam.Main(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, etcd.Dial))
}
