# A storage service spread over the fleet: each allocation gets eth0 on its
# client's service bridge and eth1 on the storage VLAN with an address of
# the one pool every client shares (fleet.yaml), which Nomad registers.
# Rescheduled to another client, an allocation gets a fresh address of the
# same pool; no range is carved per client.
job "objects" {
  datacenters = ["dc1"]

  group "objects" {
    count = 4

    spread {
      attribute = "${node.unique.id}"
    }

    network {
      # "cni/<name>": fleet.conflist in the client's cni_config_dir.
      mode = "cni/fleet"

      port "s3" {
        to = 9000
      }
    }

    # Registers eth1's address (the pool's, reachable from every client on
    # the storage VLAN) and port 9000.
    service {
      name         = "objects"
      provider     = "nomad"
      port         = "s3"
      address_mode = "alloc"
    }

    task "objects" {
      driver = "docker"

      config {
        image = "quay.io/minio/minio:latest"
        args  = ["server", "/data"]
        ports = ["s3"]
      }
    }
  }
}
