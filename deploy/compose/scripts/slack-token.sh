#!/bin/sh
# Renews the Slack bot's own Writ token (profile slack) before it expires: the bot re-reads
# the file for every vote. With a real identity provider, a client-credentials grant does this.
set -eu
while :; do
  node /app/dist/cmd/cli.js token --approver --sub slack-approver --groups approver-bots --ttl 30m --config /etc/writ/agent.yaml >/var/lib/writ-bot/token.tmp
  mv /var/lib/writ-bot/token.tmp /var/lib/writ-bot/token
  sleep 900
done
