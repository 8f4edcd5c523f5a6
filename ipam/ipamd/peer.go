package ipamd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// SocketDir makes the socket's folder, only its owner's (0700), when
// there is none, and refuses one that is a link, is not this process
// user's, or lets others in: whoever can enter it could put another
// socket in the daemon's place.
func SocketDir(socket string) error {
	if !filepath.IsAbs(socket) {
		return fmt.Errorf("socket %q: not an absolute path", socket)
	}
	dir := filepath.Dir(socket)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("socket folder %s: %w", dir, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("socket folder %s: not a folder (a symbolic link?)", dir)
	case st.Uid != uint32(os.Geteuid()):
		return fmt.Errorf("socket folder %s: owned by uid %d, not %d", dir, st.Uid, os.Geteuid())
	case st.Mode&0o077 != 0:
		return fmt.Errorf("socket folder %s: mode %#o lets others in: make it 0700", dir, st.Mode&0o777)
	}
	return nil
}

// PeerUID is the user of the process at the other end of c, as the
// kernel saw it connect (SO_PEERCRED).
func PeerUID(c *net.UnixConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	return cred.Uid, nil
}

// ErrPeer is a peer that may not call the daemon.
var ErrPeer = errors.New("only root may call nicmux-ipamd")

// CheckPeer lets root's processes only: a call runs with the daemon's
// rights, which are root's.
func CheckPeer(c *net.UnixConn) error {
	uid, err := PeerUID(c)
	if err != nil {
		return err
	}
	return allowed(uid)
}

func allowed(uid uint32) error {
	if uid != 0 {
		return fmt.Errorf("%w: the caller is uid %d", ErrPeer, uid)
	}
	return nil
}

// ErrNotDaemon is a socket whose listener is neither root nor the
// caller's own user: what it answers is not trusted, and the caller runs
// the call itself.
var ErrNotDaemon = errors.New("the socket's listener is not root")

// checkDaemon lets the client trust a listener that runs as root or as
// the client's own user (a test's daemon), and no other: the socket's
// path comes from a configuration, and a listener of another user could
// hand out any answer.
func checkDaemon(c *net.UnixConn) error {
	uid, err := PeerUID(c)
	if err != nil {
		return err
	}
	if uid != 0 && int(uid) != os.Geteuid() {
		return fmt.Errorf("%w: uid %d", ErrNotDaemon, uid)
	}
	return nil
}
