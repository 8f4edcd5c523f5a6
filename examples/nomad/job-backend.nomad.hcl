# A job in the "backend" namespace whose allocation gets a fixed address and
# MAC on eth1 (the backend VLAN), which Nomad reports as the allocation's:
# backend.yaml marks eth1 primary and allows the "backend" namespace only.
job "db" {
  namespace   = "backend"
  datacenters = ["dc1"]

  group "db" {
    network {
      mode = "cni/multi"

      port "pg" {
        to = 5432
      }

      cni {
        # Keys and values reach nicmux verbatim (no ${...} interpolation).
        # Each NICMUX_*_<ifname> goes to that interface's chain only.
        args = {
          NICMUX_ATTACHMENTS = "backend"
          NICMUX_IPS_eth1    = "10.40.0.17/24,fd00:40::17/64"
          NICMUX_MAC_eth1    = "02:00:0a:28:00:11"
        }
      }
    }

    # Registers 10.40.0.17:5432: eth1's IPv4 address.
    service {
      name         = "db"
      provider     = "nomad"
      port         = "pg"
      address_mode = "alloc"
    }

    # Registers [fd00:40::17]:5432 (Nomad 1.10.4 or later; leave this
    # service out on older releases).
    service {
      name         = "db-v6"
      provider     = "nomad"
      port         = "pg"
      address_mode = "alloc_ipv6"
    }

    task "db" {
      driver = "docker"

      config {
        image = "postgres:17"
        ports = ["pg"]
      }
    }
  }
}
