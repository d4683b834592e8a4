# The snapferry appliance image. Debian's packer 1.6.x builds it with its built-in qemu builder (no
# `packer init`, no plugin downloads): it boots the base disk that appliance/build made offline
# (debootstrap + mkfs, no ISO), provisions it over SSH, and writes
#   snapferry-appliance.qcow2   for KVM (libvirt, Proxmox, plain qemu)
#   snapferry-appliance.vmdk    streamOptimized, for ESXi, with
#   snapferry-appliance.ovf     a minimal OVF 1.0 descriptor (1 vCPU, 512 MB, one disk, one vmxnet3 NIC)
#
#   appliance/build                                 # base disk + the build's provisioning key
#   packer/build                                    # runs this template with the paths filled in
#
# Provisioning: snapferry from this checkout (a tarball of /opt/snapferry made by
# appliance/install-snapferry), the authorized keys given (lines in the README's form; none by
# default), then the build's own way in (root's key, the provisioning sshd drop-in), the host key and
# the machine id are removed so every appliance made from the image is distinct and only the
# snapferry roles can log in.

variable "base_disk" {
  type        = string
  description = "appliance/build's base.qcow2"
}

variable "provision_key" {
  type        = string
  description = "appliance/build's provision_ed25519 (root's key on the base disk only)"
}

variable "snapferry_tarball" {
  type        = string
  description = "tar of /opt/snapferry (appliance/install-snapferry)"
}

variable "authorized_keys" {
  type        = string
  description = "file of /etc/snapferry/authorized_keys lines to install; empty: none"
  default     = ""
}

variable "output_dir" {
  type    = string
  default = "images/cache/appliance/packer"
}

variable "serial_log" {
  type    = string
  default = "/dev/null"
}

source "qemu" "appliance" {
  iso_url          = var.base_disk
  iso_checksum     = "none"
  disk_image       = true
  # The base disk's 2 GiB stay as they are (packer would grow it to its 40 GiB default).
  skip_resize_disk = true
  use_backing_file = false
  format           = "qcow2"
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  disk_compression = true
  # The guest's fstrim reaches the qcow2, so the compaction after the build drops freed blocks.
  disk_discard     = "unmap"
  # /dev/kvm is not usable on the build machines this runs on; on a KVM host "kvm" is ~10x faster.
  accelerator      = "tcg"
  cpus             = 1
  memory           = 512
  headless         = true
  vnc_bind_address = "127.0.0.1"
  output_directory = var.output_dir
  vm_name          = "snapferry-appliance.qcow2"
  host_port_min    = 2222
  host_port_max    = 2299
  # The SSH forward listens on the host's loopback only (packer's default binds every address).
  qemuargs = [
    ["-netdev", "user,id=user.0,hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22"],
    ["-serial", "file:${var.serial_log}"],
  ]
  communicator         = "ssh"
  ssh_username         = "root"
  ssh_private_key_file = var.provision_key
  ssh_timeout          = "10m"
  # Poweroff over the session that is already open: the last provisioner removed the way in.
  shutdown_command = "systemctl poweroff"
  shutdown_timeout = "5m"
}

build {
  sources = ["source.qemu.appliance"]

  provisioner "file" {
    source      = var.snapferry_tarball
    destination = "/tmp/snapferry.tar"
  }

  provisioner "file" {
    source      = var.authorized_keys == "" ? "/dev/null" : var.authorized_keys
    destination = "/tmp/authorized_keys"
  }

  provisioner "shell" {
    inline = [
      "set -eu",
      # The current snapferry build replaces whatever the base disk had.
      "rm -rf /opt/snapferry && mkdir -p /opt/snapferry && tar -C /opt/snapferry --no-same-owner -xf /tmp/snapferry.tar && rm /tmp/snapferry.tar",
      "chown -R root:root /opt/snapferry && chmod -R go-w /opt/snapferry",
      "ln -sf /opt/snapferry/bin/snapferry.js /usr/local/bin/snapferry",
      # Proves the program and its native addons load under the guest's node before the image is kept.
      "node --version && /usr/local/bin/snapferry --version",
      "node -e \"require('/opt/snapferry/node_modules/zstd-napi'); require('/opt/snapferry/node_modules/ssh2')\"",
      "install -o root -g root -m 644 /tmp/authorized_keys /etc/snapferry/authorized_keys && rm /tmp/authorized_keys",
      # The build's own way in, and what must differ between appliances, go last.
      "rm -f /etc/ssh/sshd_config.d/00-provision.conf",
      # The hardened configuration alone must be valid (checked with this boot's host key, then dropped).
      "/usr/sbin/sshd -t",
      "rm -f /etc/ssh/ssh_host_*",
      "rm -rf /root/.ssh",
      "truncate -s 0 /etc/machine-id && rm -f /var/lib/dbus/machine-id /var/lib/systemd/random-seed",
      "rm -rf /var/log/journal/* /var/lib/systemd/network/* /tmp/* /var/tmp/*",
      "fstrim / || true",
      "sync",
    ]
  }

  # VMDK (streamOptimized: what ESXi imports from an OVF) and the OVF descriptor beside it.
  post-processor "shell-local" {
    inline = ["packer/ovf ${var.output_dir}/snapferry-appliance.qcow2"]
  }
}
