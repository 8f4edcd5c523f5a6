// Package etcdtest starts real etcd servers for nicmux's tests: one member
// or a cluster, on loopback ports, each with a temporary data folder, each
// a process the test pauses (SIGSTOP), resumes, kills and restarts by PID.
//
// The server is the binary Binary names, etcd's own main built by
// `make etcd` into bin/tools/etcd.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Binary is the etcd server the tests run: $NICMUX_ETCD, else
// bin/tools/etcd of the checkout.
func Binary() string {
	if b := os.Getenv("NICMUX_ETCD"); b != "" {
		return b
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "bin", "tools", "etcd")
}

// Cluster is a running etcd cluster.
type Cluster struct {
	Members []*Member
	token   string
}

// Member is one etcd server process.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	DataDir   string
	logFile   string
	cluster   *Cluster
	cmd       *exec.Cmd
	done      chan struct{}
}

// Start starts an n-member cluster and waits until it serves; the test's
// cleanup kills every member.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	c, err := Launch(t.TempDir(), n)
	if c != nil {
		t.Cleanup(func() {
			c.Stop()
			if t.Failed() {
				for _, m := range c.Members {
					if b, err := os.ReadFile(m.logFile); err == nil && len(b) > 0 {
						t.Logf("etcd %s log (tail):\n%s", m.Name, tail(b, 3000))
					}
				}
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Launch starts an n-member cluster whose data and logs live under dir,
// and waits until every member serves. Stop ends it. On an error, the
// cluster it returns (if any) has members to Stop. A member that could
// not bind its ports (another process took one between their choice and
// etcd's bind) has the whole cluster launched again on new ports, a few
// times.
func Launch(dir string, n int) (*Cluster, error) {
	if _, err := os.Stat(Binary()); err != nil {
		return nil, fmt.Errorf("etcd server %s: %w (build it with `make etcd`)", Binary(), err)
	}
	var c *Cluster
	var err error
	for attempt := range 4 {
		c, err = launch(filepath.Join(dir, fmt.Sprintf("launch%d", attempt)), n)
		if err == nil || !c.portTaken() {
			return c, err
		}
		c.Stop()
	}
	return c, err
}

func launch(dir string, n int) (*Cluster, error) {
	c := &Cluster{token: fmt.Sprintf("nicmux-%d", time.Now().UnixNano())}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	for i := range n {
		m := &Member{Name: fmt.Sprintf("m%d", i), DataDir: filepath.Join(dir, fmt.Sprintf("m%d", i)),
			logFile: filepath.Join(dir, fmt.Sprintf("m%d.log", i)), cluster: c}
		m.ClientURL, m.PeerURL = "http://"+ports[2*i], "http://"+ports[2*i+1]
		c.Members = append(c.Members, m)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for _, m := range c.Members {
		if err := m.start("new"); err != nil {
			return c, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, m := range c.Members {
		if err := m.waitServing(ctx); err != nil {
			return c, err
		}
	}
	return c, nil
}

// portTaken tells whether a member's log says one of its ports was taken.
func (c *Cluster) portTaken() bool {
	for _, m := range c.Members {
		if b, err := os.ReadFile(m.logFile); err == nil && strings.Contains(string(b), "address already in use") {
			return true
		}
	}
	return false
}

// Stop kills every member.
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		_ = m.Kill()
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// freePorts returns n distinct loopback addresses with ports nothing
// listens on now: all are held until the last is chosen, so that the
// kernel cannot hand one out twice.
func freePorts(n int) ([]string, error) {
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

func (c *Cluster) initialCluster() string {
	var parts []string
	for _, m := range c.Members {
		parts = append(parts, m.Name+"="+m.PeerURL)
	}
	return strings.Join(parts, ",")
}

// start runs the member's process; state is "new" or "existing".
func (m *Member) start(state string) error {
	log, err := os.OpenFile(m.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	m.cmd = exec.Command(Binary(),
		"--name", m.Name, "--data-dir", m.DataDir,
		"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
		"--initial-cluster", m.cluster.initialCluster(), "--initial-cluster-state", state,
		"--initial-cluster-token", m.cluster.token,
		// Elections in a test's time: leader loss is a scenario.
		"--heartbeat-interval", "50", "--election-timeout", "500",
		"--log-level", "warn")
	m.cmd.Stdout, m.cmd.Stderr = log, log
	if err := m.cmd.Start(); err != nil {
		return fmt.Errorf("starting etcd %s: %w", m.Name, err)
	}
	m.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(m.cmd, m.done)
	return nil
}

// PID is the member's process ID, 0 when it is not running.
func (m *Member) PID() int {
	if !m.Running() {
		return 0
	}
	return m.cmd.Process.Pid
}

// Running reports whether the member's process runs (paused counts).
func (m *Member) Running() bool {
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// Pause stops the member with SIGSTOP: it holds its connections and
// answers nothing. It returns once every thread of the member has
// stopped: a thread that waits for a CPU stops only when it gets one, and
// answers until then.
func (m *Member) Pause() error {
	if err := m.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for !m.stopped() {
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd %s: not stopped 5s after SIGSTOP", m.Name)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// stopped reports whether every thread of the member is stopped.
func (m *Member) stopped() bool {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", m.cmd.Process.Pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		i := strings.LastIndexByte(string(b), ')')
		if err != nil || i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
			return false
		}
	}
	return true
}

// Resume continues a paused member.
func (m *Member) Resume() error { return m.signal(syscall.SIGCONT) }

func (m *Member) signal(s syscall.Signal) error {
	if !m.Running() {
		return fmt.Errorf("etcd %s is not running", m.Name)
	}
	return m.cmd.Process.Signal(s)
}

// Kill kills the member with SIGKILL and waits for it to end.
func (m *Member) Kill() error {
	if !m.Running() {
		return nil
	}
	_ = m.cmd.Process.Signal(syscall.SIGCONT)
	if err := m.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-m.done
	return nil
}

// Restart starts a killed member again on its data folder.
func (m *Member) Restart() error {
	if m.Running() {
		return fmt.Errorf("etcd %s is running", m.Name)
	}
	return m.start("existing")
}

// Client returns a client of the members' endpoints, closed at the test's
// cleanup.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), Logger: zap.NewNop(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// WaitServing waits until every running member answers a linearizable
// read.
func (c *Cluster) WaitServing(ctx context.Context) error {
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		if err := m.waitServing(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (m *Member) waitServing(ctx context.Context) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := cli.Get(rctx, "/etcdtest/ping")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd %s at %s does not serve: %w", m.Name, m.ClientURL, err)
		case <-m.done:
			return fmt.Errorf("etcd %s ended before serving (log %s)", m.Name, m.logFile)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Leader returns the member that leads the cluster now.
func (c *Cluster) Leader(ctx context.Context) (*Member, error) {
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, Logger: zap.NewNop()})
		if err != nil {
			return nil, err
		}
		st, err := cli.Status(ctx, m.ClientURL)
		cli.Close()
		if err == nil && st.Leader == st.Header.MemberId {
			return m, nil
		}
	}
	return nil, errors.New("no member leads the cluster")
}

// Dump returns every key under prefix and its value.
func (c *Cluster) Dump(ctx context.Context, t testing.TB, prefix string) map[string]string {
	t.Helper()
	resp, err := c.Client(t).Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("reading etcd under %s: %v", prefix, err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}
