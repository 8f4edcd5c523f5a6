// Package testworld is what nicmux's test suites (integration, the go-cni
// suite in test/nomad, torture, and the benchmark where it needs it) share,
// so that a new suite starts from it:
//
//   - Suite.Enter, the start of a TestMain: root, a private network and
//     mount namespace, the binaries under bin/ (BinDir, NicmuxBin,
//     PluginsDir, TestPluginsDir, CNIPath);
//   - namespaces (NewNetns, InNetns, MakeMaster) and what is in them
//     (Links, Addrs, Link, BridgePorts, Sysctl), over package netnsutil;
//   - what plugins leave on the node: host-local's leases (Leases, HeldBy),
//     nicmux's state folder (StateLeft and the layout: PlanFile,
//     ResultFile, ...), iptables (Iptables, FlushIptables), tuning's
//     backups (TuningBackups), processes (Procs), and the leak accounting
//     over all of them (Census, WantNoLeaks);
//   - a world's files (Files: state folder, IPAM folder, log, the recorder
//     plugin's calls, nicmux's conflist) and small helpers (RandHex,
//     CNICode, WantCNIError, WriteFile, ReadJSON).
//
// Functions that take a testing.TB end the test on an error they meet;
// the others return it, for code that counts what it cannot read (the
// torture suite's leak accounting) or that has no test (the benchmark).
package testworld
