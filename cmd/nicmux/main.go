// Command nicmux is a CNI meta-plugin: one CNI entry that gives a container
// several interfaces, each through its own delegate plugin chain. Run with a
// command (nicmux help), it also checks its configuration.
package main

import (
	"os"

	"github.com/nicmux/nicmux/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}
