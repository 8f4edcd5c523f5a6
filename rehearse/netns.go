package rehearse

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetNSDir is where the client mounts an allocation's network namespace,
// as /var/run/netns/<allocID>.
const NetNSDir = "/var/run/netns"

// createNetNS makes a network namespace and bind-mounts it at path, as
// `ip netns add` does.
func createNetNS(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("creating netns %s: %w", path, err)
	}
	f.Close()
	errc := make(chan error, 1)
	// On a thread of its own, which ends with the goroutine if it cannot
	// get back to the original namespace.
	go func() { errc <- unshareAndMount(path) }()
	if err := <-errc; err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("creating netns %s: %w", path, err)
	}
	return nil
}

func unshareAndMount(path string) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return err
	}
	self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	mountErr := unix.Mount(self, path, "none", unix.MS_BIND, "")
	if err := netns.Set(orig); err != nil {
		return errors.Join(mountErr, err)
	}
	runtime.UnlockOSThread()
	return mountErr
}

// destroyNetNS unmounts and removes the namespace at path, as the client
// does when CHECK fails (no DEL): its links go once nothing holds it.
func destroyNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}
