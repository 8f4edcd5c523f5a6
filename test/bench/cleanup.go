package main

import (
	"fmt"
	"os"
	"sync"
)

// cleanups holds what the run must undo, in reverse order, whether it ends
// normally or through fatalf.
var cleanups struct {
	sync.Mutex
	fns  []func()
	done bool
}

// atCleanup registers f to run when the benchmark ends.
func atCleanup(f func()) {
	cleanups.Lock()
	defer cleanups.Unlock()
	cleanups.fns = append(cleanups.fns, f)
}

// cleanupAll runs the registered cleanups once, last registered first.
func cleanupAll() {
	cleanups.Lock()
	defer cleanups.Unlock()
	if cleanups.done {
		return
	}
	cleanups.done = true
	for i := len(cleanups.fns) - 1; i >= 0; i-- {
		cleanups.fns[i]()
	}
}

// fatalf reports a failure, cleans up and exits: a benchmark that goes on
// after an error would measure the error.
func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: FATAL: "+format+"\n", a...)
	cleanupAll()
	os.Exit(1)
}

// must ends the run on err, naming what was being done.
func must(err error, what string, a ...any) {
	if err != nil {
		fatalf("%s: %v", fmt.Sprintf(what, a...), err)
	}
}
