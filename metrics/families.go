package metrics

// The families nicmux and nicmux-ipam export, every one with bounded
// labels only: verbs, results (ok or a CNI code), plugin types, reasons
// and pool names; never a container ID. docs/operations.md lists them.
// They are definitions, never changed.
var (
	Verbs = &Family{Name: "nicmux_verbs_total", Kind: Counter, Labels: []string{"verb", "result"},
		Help: "Verbs (ADD, CHECK, DEL, GC, STATUS) and operator commands (nicmux gc, nicmux forget) run, by result: ok, or the CNI error code."}
	VerbSeconds = &Family{Name: "nicmux_verb_duration_seconds", Kind: Histogram, Labels: []string{"verb"}, Buckets: Seconds,
		Help: "How long each verb took, from reading nicmux's entry to its outcome."}
	DelegateCalls = &Family{Name: "nicmux_delegate_calls_total", Kind: Counter, Labels: []string{"plugin", "verb", "result"},
		Help: "Delegate plugin calls, by plugin type, verb and result: ok, or the CNI error code."}
	DelegateSeconds = &Family{Name: "nicmux_delegate_call_duration_seconds", Kind: Histogram, Labels: []string{"plugin", "verb"}, Buckets: Seconds,
		Help: "How long each delegate plugin call took, its process's start included."}
	DelegateTimeouts = &Family{Name: "nicmux_delegate_timeouts_total", Kind: Counter, Labels: []string{"plugin", "verb"},
		Help: "Delegate plugin calls killed, with their process group, at delegateTimeout."}
	DelegateKills = &Family{Name: "nicmux_delegate_kills_total", Kind: Counter, Labels: []string{"cause"},
		Help: "Delegate process groups killed, by cause: timeout (delegateTimeout), deadline (the verb's own bound, GC's forwarding), fence (left running by a nicmux that was killed, killed by the next verb on its container)."}
	Rollbacks = &Family{Name: "nicmux_rollbacks_total", Kind: Counter, Labels: []string{"result"},
		Help: "Rollbacks of a failed ADD, by result: ok (nothing left), failed (state kept for a later DEL or ADD)."}
	StaleReleases = &Family{Name: "nicmux_stale_releases_total", Kind: Counter, Labels: []string{"reason"},
		Help: "Stale attachments an ADD released before attaching again, by reason: rebuild (the namespace was recreated), reboot (recorded before the host's last boot), incomplete (the earlier ADD did not complete), gone (none of its interfaces is left), unreadable (its record cannot be read)."}
	GCRuns = &Family{Name: "nicmux_gc_runs_total", Kind: Counter, Labels: []string{"by"},
		Help: "Garbage collections run, by the CNI GC verb (by=verb) or nicmux gc (by=command)."}
	GCReleased = &Family{Name: "nicmux_gc_released_total", Kind: Counter, Labels: []string{"by"},
		Help: "Containers garbage collections released."}
	GCFailed = &Family{Name: "nicmux_gc_failures_total", Kind: Counter, Labels: []string{"by"},
		Help: "Containers garbage collections failed to release (kept for a later DEL or collection)."}
	GCLastReleased = &Family{Name: "nicmux_gc_last_released", Kind: Gauge, Labels: []string{"by"},
		Help: "Containers the last garbage collection released."}
	GCLastRun = &Family{Name: "nicmux_gc_last_run_timestamp_seconds", Kind: Gauge, Labels: []string{"by"},
		Help: "When the last garbage collection ended, in seconds since the Unix epoch."}
	Unreadable = &Family{Name: "nicmux_unreadable_records_total", Kind: Counter, Labels: []string{"verb"},
		Help: "Container records a verb or command could not read (each time it met one)."}
	Containers = &Family{Name: "nicmux_containers", Kind: Gauge, Labels: []string{"state"},
		Help: "Containers recorded in the state folder, by state: live (ADD completed), incomplete (an ADD running, or one that never completed), stuck (a release left it part-way, or its record cannot be read). Moved by ADD and DEL, recounted by every garbage collection."}
	ContainersCounted = &Family{Name: "nicmux_containers_counted_timestamp_seconds", Kind: Gauge,
		Help: "When nicmux_containers was last recounted from the whole state folder, in seconds since the Unix epoch."}

	IPAMVerbs = &Family{Name: "nicmux_ipam_verbs_total", Kind: Counter, Labels: []string{"pool", "verb", "result"},
		Help: "nicmux-ipam's verbs, by pool, verb and result: ok, or the CNI error code."}
	IPAMVerbSeconds = &Family{Name: "nicmux_ipam_verb_duration_seconds", Kind: Histogram, Labels: []string{"pool", "verb"}, Buckets: Seconds,
		Help: "How long each nicmux-ipam verb took, its etcd round trips included."}
	PoolSize = &Family{Name: "nicmux_ipam_pool_size", Kind: Gauge, Labels: []string{"pool"},
		Help: "Addresses in the pool's ranges, as this node last read the pool."}
	PoolUsed = &Family{Name: "nicmux_ipam_pool_used", Kind: Gauge, Labels: []string{"pool"},
		Help: "Addresses of the pool leased, on any node, as this node last read the pool."}
	PoolFree = &Family{Name: "nicmux_ipam_pool_free", Kind: Gauge, Labels: []string{"pool"},
		Help: "Addresses of the pool not leased, as this node last read the pool."}
	QueuedReleases = &Family{Name: "nicmux_ipam_queued_releases", Kind: Gauge, Labels: []string{"pool"},
		Help: "Releases this node queued while etcd did not answer, waiting for it."}
	EtcdErrors = &Family{Name: "nicmux_ipam_etcd_errors_total", Kind: Counter, Labels: []string{"pool"},
		Help: "etcd requests that got no answer in time."}
)

// known are the families the renderer draws, by name.
func known() map[string]*Family {
	out := map[string]*Family{}
	for _, f := range []*Family{Verbs, VerbSeconds, DelegateCalls, DelegateSeconds, DelegateTimeouts, DelegateKills,
		Rollbacks, StaleReleases, GCRuns, GCReleased, GCFailed, GCLastReleased, GCLastRun, Unreadable, Containers,
		ContainersCounted, IPAMVerbs, IPAMVerbSeconds, PoolSize, PoolUsed, PoolFree, QueuedReleases, EtcdErrors} {
		out[f.Name] = f
	}
	return out
}
