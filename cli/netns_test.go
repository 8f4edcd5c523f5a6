package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
)

// The root module's tests cannot use test/netnsutil (a module of its own,
// so that the go-cni suite's legs keep their pinned libraries): the two
// things the host-fact tests need are here.

// privateEnv is set in the environment of the test process re-run in a
// private network namespace.
const privateEnv = "NICMUX_CLI_PRIVATE_NETNS"

// reexecInPrivateNetns runs the test binary again in a new network
// namespace with lo up, and returns its exit code; -1 in the re-run one.
func reexecInPrivateNetns() int {
	if os.Getenv(privateEnv) != "" {
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bringing lo up:", err)
			return 1
		}
		return -1
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Env = append(os.Environ(), privateEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	err := cmd.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitErr.ExitCode()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "re-running in a private netns:", err)
		return 1
	}
	return 0
}

// addVeth makes a veth pair whose end name is up: a macvlan master (this
// kernel has no dummy links). It is removed at cleanup.
func addVeth(t *testing.T, name string) {
	t.Helper()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	for _, n := range []string{name, veth.PeerName} {
		l, err := netlink.LinkByName(n)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
