#!/bin/bash
# Container health check: GET /healthz on the relay's admin port, with bash alone (the image has no curl).
# Exit 0 when the answer is 200, 1 otherwise. The port is TRIGGER_RELAY_ADMIN_PORT (9090 by default), which must
# match [admin] listen in the config.
set -u
port="${TRIGGER_RELAY_ADMIN_PORT:-9090}"
exec 3<>"/dev/tcp/127.0.0.1/${port}" || exit 1
printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
IFS= read -r -t 3 status <&3 || exit 1
case "$status" in
  "HTTP/1.1 200"* | "HTTP/1.0 200"*) exit 0 ;;
  *) exit 1 ;;
esac
