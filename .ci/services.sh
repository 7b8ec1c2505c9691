#!/usr/bin/env bash
# Start the shared servers the tests expect when they are not answering (see ../shared/services.md).
# Kafka (Tansu) and a current NATS are started by the test suite itself, on free ports.
set -u

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # port, name
  for _ in $(seq 1 100); do up "$1" && return 0; sleep 0.1; done
  echo "services: $2 did not come up on port $1" >&2
  return 1
}

if ! up 5432 && command -v pg_ctlcluster >/dev/null; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  wait_for 5432 PostgreSQL
fi
if ! up 6379 && command -v redis-server >/dev/null; then
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for 6379 Redis
fi
if ! up 4222 && [ -x /usr/sbin/nats-server ]; then
  echo "services: starting NATS"
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_for 4222 NATS
fi
for port in 5432 6379 4222; do
  up "$port" || echo "services: nothing answers on 127.0.0.1:$port; its tests will fail under CI=true" >&2
done
exit 0
