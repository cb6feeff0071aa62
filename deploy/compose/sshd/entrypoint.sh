#!/bin/sh
# sshd refuses a host key or authorized_keys readable by others (the secrets are bind mounts
# with the host's modes): copy them into place, root-owned and 0600/0644, then run sshd.
set -eu
install -m 600 /run/secrets/ssh-host-ed25519 /etc/ssh/ssh_host_ed25519_key
install -m 644 /run/secrets/ssh-read.pub /etc/ssh/authorized_keys/writ-read
install -m 644 /run/secrets/ssh-write.pub /etc/ssh/authorized_keys/writ-write
exec /usr/sbin/sshd -D -e
