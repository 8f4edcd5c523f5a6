# A job whose allocations get two interfaces through nicmux: eth0 on the
# service bridge (with the "http" port mapped) and eth1 on the storage VLAN.
job "web" {
  datacenters = ["dc1"]

  group "web" {
    network {
      # "cni/<name>": the conflist named "multi" in the client's cni_config_dir.
      mode = "cni/multi"

      port "http" {
        to = 8080
      }

      cni {
        # Picks storage.yaml beside the conflist's attachments file. Leave the
        # cni block out to get the default set (multi.yaml).
        args = {
          NICMUX_ATTACHMENTS = "storage"
        }
      }
    }

    service {
      name         = "web"
      port         = "http"
      # Nomad's own service catalog: the job places without Consul.
      provider     = "nomad"
      # The allocation's address: eth0's, see docs/nomad.md.
      address_mode = "alloc"
    }

    task "web" {
      driver = "docker"

      config {
        image = "nginxinc/nginx-unprivileged:1.27"
        ports = ["http"]
      }
    }
  }
}
