// Command nicmux-ipam is a CNI IPAM plugin that keeps one address pool
// across every node in etcd. Run with a command (nicmux-ipam help), it
// shows and checks the pools.
package main

import (
	"os"

	"github.com/nicmux/nicmux/ipam"
	"github.com/nicmux/nicmux/ipam/etcd"
)

func main() {
	os.Exit(ipam.Main(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, etcd.Dial))
}
