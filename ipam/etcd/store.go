// Package etcd is nicmux-ipam's Store on etcd v3: every read one range
// transaction, every claim one compare-and-swap transaction. Nothing above
// it knows what a revision is.
package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/tlsutil"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nicmux/nicmux/ipam"
)

// maxOps is etcd's default limit of operations in one transaction
// (--max-txn-ops).
const maxOps = 128

// Store is an ipam.Store on an etcd cluster.
type Store struct {
	c *clientv3.Client
}

// Dial returns the store of the cluster c names. It does not wait for a
// connection: every operation does, within its context's deadline.
func Dial(c ipam.EtcdConfig) (ipam.Store, error) {
	tlsConf, err := tlsConfig(c)
	if err != nil {
		return nil, err
	}
	// The client retries on its own only what never reached etcd, and
	// reads; the allocator retries the rest, knowing which claims may have
	// been applied.
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: c.Endpoints,
		TLS:       tlsConf,
		Logger:    zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	return &Store{c: cli}, nil
}

// tlsConfig is the client's TLS, when an endpoint is https or a file is
// given.
func tlsConfig(c ipam.EtcdConfig) (*tls.Config, error) {
	https := false
	for _, e := range c.Endpoints {
		https = https || strings.HasPrefix(e, "https://")
	}
	if !https && c.CAFile == "" && c.CertFile == "" {
		return nil, nil
	}
	info := transport.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile, TrustedCAFile: c.CAFile}
	if c.CertFile == "" {
		// TLSInfo needs a certificate; server authentication alone is a
		// plain TLS config with the CA.
		return caOnly(c.CAFile)
	}
	conf, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd TLS (caFile %q, certFile %q, keyFile %q): %w", c.CAFile, c.CertFile, c.KeyFile, err)
	}
	return conf, nil
}

func caOnly(caFile string) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return conf, nil
	}
	pool, err := tlsutil.NewCertPool([]string{caFile})
	if err != nil {
		return nil, fmt.Errorf("etcd TLS: caFile %q: %w", caFile, err)
	}
	conf.RootCAs = pool
	return conf, nil
}

// Read answers reads in one range transaction (more when there are more
// than maxOps).
func (s *Store) Read(ctx context.Context, reads ...ipam.Read) ([][]ipam.KV, error) {
	out := make([][]ipam.KV, 0, len(reads))
	for start := 0; start < len(reads); start += maxOps {
		chunk := reads[start:min(start+maxOps, len(reads))]
		ops := make([]clientv3.Op, len(chunk))
		for i, r := range chunk {
			ops[i] = getOp(r)
		}
		resp, err := s.c.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, wrap(err)
		}
		out = append(out, ranges(resp.Responses)...)
	}
	return out, nil
}

// Txn runs t as one etcd transaction.
func (s *Store) Txn(ctx context.Context, t ipam.Txn) (bool, [][]ipam.KV, error) {
	cmps := make([]clientv3.Cmp, len(t.If))
	for i, c := range t.If {
		if c.Value == nil {
			cmps[i] = clientv3.Compare(clientv3.CreateRevision(c.Key), "=", 0)
		} else {
			cmps[i] = clientv3.Compare(clientv3.Value(c.Key), "=", string(c.Value))
		}
	}
	thens := make([]clientv3.Op, len(t.Then))
	for i, op := range t.Then {
		switch {
		case op.Delete:
			thens[i] = clientv3.OpDelete(op.Key)
		case op.Lease != 0:
			thens[i] = clientv3.OpPut(op.Key, string(op.Value), clientv3.WithLease(clientv3.LeaseID(op.Lease)))
		default:
			thens[i] = clientv3.OpPut(op.Key, string(op.Value))
		}
	}
	elses := make([]clientv3.Op, len(t.Else))
	for i, r := range t.Else {
		elses[i] = getOp(r)
	}
	resp, err := s.c.Txn(ctx).If(cmps...).Then(thens...).Else(elses...).Commit()
	if err != nil {
		return false, nil, wrap(err)
	}
	if resp.Succeeded {
		return true, nil, nil
	}
	return false, ranges(resp.Responses), nil
}

// Grant makes a lease of ttl, in whole seconds.
func (s *Store) Grant(ctx context.Context, ttl time.Duration) (int64, error) {
	resp, err := s.c.Grant(ctx, int64((ttl+time.Second-1)/time.Second))
	if err != nil {
		return 0, wrap(err)
	}
	return int64(resp.ID), nil
}

// Close ends the client's connections.
func (s *Store) Close() error { return s.c.Close() }

func getOp(r ipam.Read) clientv3.Op {
	var opts []clientv3.OpOption
	if r.Prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	if r.KeysOnly {
		opts = append(opts, clientv3.WithKeysOnly())
	}
	return clientv3.OpGet(r.Key, opts...)
}

func ranges(resps []*etcdserverpb.ResponseOp) [][]ipam.KV {
	out := make([][]ipam.KV, len(resps))
	for i, r := range resps {
		rr := r.GetResponseRange()
		if rr == nil {
			continue
		}
		kvs := make([]ipam.KV, len(rr.Kvs))
		for j, kv := range rr.Kvs {
			kvs[j] = ipam.KV{Key: string(kv.Key), Value: kv.Value}
		}
		out[i] = kvs
	}
	return out
}

// wrap marks the errors that say the cluster did not answer (in time, or
// at all: no leader, a leader change, no endpoint) as ipam.ErrUnavailable.
func wrap(err error) error {
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("%w: %w", ipam.ErrNoLease, err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: %w", ipam.ErrUnavailable, err)
	}
	code := status.Code(err)
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted:
		return fmt.Errorf("%w: %w", ipam.ErrUnavailable, err)
	}
	return err
}
