// Command etcdfloor is the floor of nicmux-ipam's verbs: a static Go
// binary linking etcd's client as nicmux-ipam does. Run bare, it prints
// hello: its start is a Go binary's plus the package initialisation of
// grpc, protobuf and etcd's API. Run with an endpoint and a key, it also
// dials etcd and makes one transaction that puts the key if it is absent,
// as an ADD's claim does, and exits without closing the connection, as
// nicmux-ipam does.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Println("hello")
		return
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{os.Args[1]}, Logger: zap.NewNop()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key := os.Args[2]
	_, err = c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(clientv3.OpPut(key, "x")).Commit()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
