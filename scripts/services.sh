#!/usr/bin/env bash
# Start any of the machine's loopback servers that are down (PostgreSQL, Redis,
# RabbitMQ, Mosquitto, NATS). Tests that need one find it at its standard port;
# under CI=true a server that is still missing makes those tests fail.
set -u
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start() {
  local name=$1 port=$2; shift 2
  if port_open "$port"; then return 0; fi
  if ! command -v "$1" >/dev/null 2>&1; then echo "services: $name not installed ($1)"; return 0; fi
  echo "services: starting $name"
  "$@" >/dev/null 2>&1 || echo "services: could not start $name"
}
if [ -d /etc/postgresql ]; then
  start postgresql 5432 pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
fi
start redis 6379 redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
start rabbitmq 5672 rabbitmq-server -detached
start mosquitto 1883 mosquitto -d -c /etc/mosquitto/mosquitto.conf
start nats 4222 start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
exit 0
