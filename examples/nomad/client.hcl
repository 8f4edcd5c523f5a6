# Nomad client agent configuration: where Nomad finds CNI plugin binaries and
# CNI network configurations. Merge this into the client's agent config.
client {
  enabled = true

  # nicmux and the reference plugins its attachment files name (bridge,
  # macvlan, host-local, portmap, tuning, ...). A colon-separated list works.
  cni_path = "/opt/cni/bin"

  # multi.conflist goes here. Nomad reads every .conf, .conflist and .json
  # file, sorted, and uses the first whose "name" matches the job's
  # network mode "cni/<name>".
  cni_config_dir = "/opt/cni/config"
}
