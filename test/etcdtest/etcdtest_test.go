package etcdtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/nicmux/nicmux/test/testworld"
)

func TestMain(m *testing.M) {
	suite := testworld.Suite{Makes: "etcdtest runs etcd in a private network namespace", Target: "cluster", Files: []string{Binary()}}
	if code := suite.Enter(); code >= 0 {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func TestOneMemberPausedAndResumed(t *testing.T) {
	c := Start(t, 1)
	cli := c.Client(t)
	ctx := context.Background()
	if _, err := cli.Put(ctx, "/k", "v"); err != nil {
		t.Fatal(err)
	}
	if err := c.Members[0].Pause(); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := cli.Get(short, "/k")
	cancel()
	if err == nil {
		t.Fatal("a paused member answered")
	}
	if err := c.Members[0].Resume(); err != nil {
		t.Fatal(err)
	}
	if got := c.Dump(ctx, t, "/k"); got["/k"] != "v" {
		t.Errorf("after resume: %v", got)
	}
}

func TestThreeMembersLoseTheirLeader(t *testing.T) {
	c := Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	old, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	if old.Running() || old.PID() != 0 {
		t.Fatal("the killed leader still runs")
	}
	for {
		m, err := c.Leader(ctx)
		if err == nil && m != old {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no new leader after the old one was killed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := c.Client(t).Put(ctx, "/after", "x"); err != nil {
		t.Fatal(err)
	}
	if err := old.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitServing(ctx); err != nil {
		t.Fatal(err)
	}
}
