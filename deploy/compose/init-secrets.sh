#!/bin/sh
# Makes the secrets docker-compose.yml mounts (compose `secrets:`, files under
# deploy/compose/secrets/, never committed, never in an image). Run once before
# `docker compose up`; it keeps every file that exists, so running it again only fills gaps.
# Needs openssl (1.1.1+) and ssh-keygen on the host.
#
#   sh deploy/compose/init-secrets.sh [DIR]     (default: deploy/compose/secrets)
set -eu
dir=${1:-$(dirname "$0")/secrets}
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"

# The services run as the image's `node` user (uid 1000) and read these files through bind
# mounts, which keep the host's owner and mode: the folder (0700) is what keeps other host
# users out, the files are readable inside the one container each is given to.
# sshd's host key and the PostgreSQL passwords are copied by their containers' entrypoints.
umask 022

# A password nats-server can read from its environment: it must start with a letter (one that
# starts with a digit or '-' reads as a number and the server refuses to start).
password() {
  [ -s "$1" ] || printf 'w%s\n' "$(openssl rand -base64 32 | tr -dc 'A-Za-z0-9' | cut -c1-32)" >"$1"
}
ed25519() {
  [ -s "$1" ] || openssl genpkey -algorithm ed25519 -out "$1"
  openssl pkey -in "$1" -pubout -out "${1%.pem}.pub.pem"
}
# keyId() of schemas/grant.ts: the first 16 hex of the SHA-256 of the public key's SPKI DER.
key_id() {
  openssl pkey -in "$1" -pubout -outform DER | openssl dgst -sha256 -r | cut -c1-16
}

for role in agent broker worker approver auditor operator; do password "nats-$role.password"; done
for who in admin read write; do password "pg-$who.password"; done

# The broker's grant-signing key; the workers trust its public half (grants.publicKeyFiles).
ed25519 grant-key.pem
# Each writer's audit block-signing key, and the registry naming who may write what (audit/keys.ts).
for w in broker worker-postgres worker-ssh; do ed25519 "audit-$w.pem"; done
{
  echo 'v: 1'
  echo 'keys:'
  for w in broker worker-postgres worker-ssh; do
    # Quoted: an id such as 83334287215076e2 is a number to YAML.
    echo "  \"$(key_id "audit-$w.pem")\":"
    echo "    kind: ${w%%-*}"
    echo "    note: compose $w"
    echo '    publicKey: |'
    sed 's/^/      /' "audit-$w.pub.pem"
  done
} >audit-keys.yaml

# The SSH target: its host key (pinned by the worker through known_hosts) and one client key
# per access mode (the target's writ-read and writ-write users).
[ -s ssh-host-ed25519 ] || ssh-keygen -q -t ed25519 -N '' -C sshd -f ssh-host-ed25519
printf 'sshd %s\n' "$(cut -d' ' -f1-2 ssh-host-ed25519.pub)" >ssh-known-hosts
for mode in read write; do
  [ -s "ssh-$mode" ] || ssh-keygen -q -t ed25519 -N '' -C "writ-$mode" -f "ssh-$mode"
done

# The Slack approver (profile `slack`): its vote-signing key, whose raw public key (base64url,
# as `approver/main.js keygen` prints it) goes into broker.yaml's approvals.trustedBots; and
# the two Slack secrets, empty placeholders (so that docker does not create directories in
# their place) to fill before `docker compose --profile slack up`.
[ -s slack-vote-key.pem ] || openssl genpkey -algorithm ed25519 -out slack-vote-key.pem
openssl pkey -in slack-vote-key.pem -pubout -outform DER | tail -c 32 | openssl base64 -A | tr '+/' '-_' | tr -d '=' >slack-vote-key.pub
echo >>slack-vote-key.pub
for f in slack-bot-token slack-signing-secret; do [ -e "$f" ] || : >"$f"; done

# openssl and ssh-keygen write private keys 0600 for the host user; the services read them as
# uid 1000 (see above).
chmod 644 ./*

echo "secrets in $(pwd)"
