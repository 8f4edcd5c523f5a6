// Command nicmux-ipam is a CNI IPAM plugin that keeps one address pool
// across every node in etcd. It is a thin client of nicmux-ipamd, the
// node's daemon that holds the etcd connections: it hands each CNI call to
// the daemon's socket and prints the answer, and when no daemon answers it
// runs nicmux-ipamd (installed beside it) for the call. It links no etcd
// client, so that a call through the daemon costs a small binary's start.
// Run with a command (nicmux-ipam help), it runs nicmux-ipamd's.
package main

import (
	"os"

	"github.com/nicmux/nicmux/ipam/ipamd"
	"github.com/nicmux/nicmux/release"
)

func main() {
	daemon, err := ipamd.DaemonBeside()
	if err != nil {
		daemon = "nicmux-ipamd"
	}
	p := &ipamd.Plugin{Args: os.Args[1:], Environ: os.Environ(), Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Daemon: daemon, About: release.About("nicmux-ipam"), Wait: ipamd.DefaultWait}
	os.Exit(p.Run())
}
