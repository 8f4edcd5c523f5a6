// Command nicmux is a CNI meta-plugin: one CNI entry that gives a container
// several interfaces, each through its own delegate plugin chain.
package main

import (
	"os"

	"github.com/nicmux/nicmux/mux"
)

func main() {
	if e := mux.Run(mux.New(), os.Getenv); e != nil {
		_ = e.Print()
		os.Exit(1)
	}
}
