// Package testworld is what nicmux's test suites share (integration, the
// go-cni suite in test/nomad, torture, and the benchmark where it needs
// it), so that a new suite starts from it:
//
//   - Suite.Enter, the start of a TestMain: root, private network and mount
//     namespaces, the binaries under bin/ (BinDir, NicmuxBin, PluginsDir,
//     TestPluginsDir, CNIPath);
//   - namespaces (NewNetns, InNetns, Do, MakeMaster) and what is in them
//     (Links, Addrs, Link, MAC, Sysctl, BridgePorts, ReplaceAddrs), over
//     package netnsutil;
//   - what plugins leave on the node: host-local's leases (Files.Leases,
//     HeldBy), nicmux's state folder (StateLeft, and the layout: PlanFile,
//     ResultFile, CompleteFile, LockFile, ...), iptables (Iptables,
//     FlushIptables), tuning's backups (TuningBackups), processes (Procs),
//     and the leak accounting over all of them (Census, WantNoLeaks);
//   - a world's files (Files: state folder, IPAM folder, nicmux's log and
//     conflist, the recorder plugin's calls) and small helpers (RandHex,
//     CNICode, WantCNIError, WriteFile, ReadJSON, WriteJSON).
//
// Functions that take a testing.TB end the test on an error they meet;
// the others return it, for code that counts what it cannot read (the
// torture suite's leak accounting) or that has no test (the benchmark).
//
// It is a module of its own, like netnsutil, imported through a replace;
// it requires the oldest containernetworking/cni a go-cni leg links, so
// that it never raises a leg's version.
package testworld
