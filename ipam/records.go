package ipam

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"time"
)

// recordVersion is the version of every value nicmux-ipam writes, in etcd
// and in the data folder.
const recordVersion = 1

// OwnerID names a lease's owner: one interface of one container.
type OwnerID struct {
	ContainerID string
	IfName      string
}

func (o OwnerID) String() string { return o.ContainerID + "/" + o.IfName }

// Lease is an owner's addresses, one per range set, as the store records
// them: the value of each of its lease keys and of its owner key.
type Lease struct {
	Version     int       `json:"version"`
	ContainerID string    `json:"containerID"`
	IfName      string    `json:"ifname"`
	Network     string    `json:"network,omitempty"`
	Node        string    `json:"node"`
	Addrs       []Address `json:"addresses"`
	// Claim is random and new with every claim, so that a release queued
	// for one claim can never release a later one of the same owner.
	Claim string    `json:"claim"`
	Time  time.Time `json:"time"`
}

// Address is one leased address and the block it is in.
type Address struct {
	IP    netip.Addr `json:"ip"`
	Block string     `json:"block"`
}

// IPs are the lease's addresses.
func (l *Lease) IPs() []netip.Addr {
	var out []netip.Addr
	for _, a := range l.Addrs {
		out = append(out, a.IP)
	}
	return out
}

// Owner is the lease's owner.
func (l *Lease) Owner() OwnerID { return OwnerID{ContainerID: l.ContainerID, IfName: l.IfName} }

func (l *Lease) String() string {
	var ips []string
	for _, a := range l.Addrs {
		ips = append(ips, a.IP.String())
	}
	return fmt.Sprintf("%s (container %s, %s, node %s)", strings.Join(ips, ","), l.ContainerID, l.IfName, l.Node)
}

func (l *Lease) encode() []byte { b, _ := json.Marshal(l); return b }

// decodeLease reads a lease value; key names it in the error.
func decodeLease(key string, b []byte) (*Lease, error) {
	var l Lease
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("%s: not a lease record: %w", key, err)
	}
	if l.Version != recordVersion || l.ContainerID == "" || len(l.Addrs) == 0 {
		return nil, fmt.Errorf("%s: not a version %d lease record with a container and addresses", key, recordVersion)
	}
	return &l, nil
}

// blockClaim is the value of a block's key: the node that claimed it.
type blockClaim struct {
	Version int       `json:"version"`
	Node    string    `json:"node"`
	Time    time.Time `json:"time"`
}

func decodeBlockClaim(key string, b []byte) (blockClaim, error) {
	var c blockClaim
	if err := json.Unmarshal(b, &c); err != nil || c.Node == "" {
		return c, fmt.Errorf("%s: not a block claim", key)
	}
	return c, nil
}

// nodeAlive is the value of a node's last-write key.
type nodeAlive struct {
	Version int       `json:"version"`
	Time    time.Time `json:"time"`
}

// poolDef is the pool's definition, stored by the first node that uses the
// pool; every other node's configuration must agree with it.
type poolDef struct {
	Version           int           `json:"version"`
	Ranges            [][]rangeConf `json:"ranges"`
	BlockPrefixLength blockLengths  `json:"blockPrefixLength"`
	Node              string        `json:"node"`
	Time              time.Time     `json:"time"`
}

// sameAs reports whether two definitions describe the same pool.
func (d *poolDef) sameAs(o *poolDef) bool {
	return reflect.DeepEqual(d.Ranges, o.Ranges) && d.BlockPrefixLength == o.BlockPrefixLength
}

func (d *poolDef) rangesString() string {
	b, _ := json.Marshal(d.Ranges)
	return string(b)
}

func encode(v any) []byte { b, _ := json.Marshal(v); return b }

// jsonDecode reads a value, naming its key when it cannot.
func jsonDecode(kv KV, v any) error {
	if err := json.Unmarshal(kv.Value, v); err != nil {
		return fmt.Errorf("%s: %w", kv.Key, err)
	}
	return nil
}
