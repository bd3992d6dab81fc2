#!/usr/bin/env bash
# Checks dashboards/ against a real Prometheus: installs Debian's `prometheus`
# package if missing, runs `promtool check rules` and the rules' unit tests
# (series from several processes), builds the redis_queues example, then
# check.py starts two processes of it on the same queues (Redis at
# 127.0.0.1:6379) and a Prometheus scraping both on loopback ports, evaluates
# every PromQL expression of the dashboard and of the alert rules through the
# HTTP API across the two instances, and stops them all. Bounded: check.py
# gives up after JOBSIGHT_CHECK_DEADLINE seconds (default 180).
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  echo "dashboards: installing Debian's prometheus package (prometheus, promtool)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

promtool check rules dashboards/alerts.yml dashboards/checkin-alerts.yml dashboards/slo-alerts.yml
promtool test rules dashboards/alerts.test.yml dashboards/checkin-alerts.test.yml dashboards/slo-alerts.test.yml

cargo build --locked --quiet --example redis_queues
exec python3 dashboards/check/check.py \
  --example target/debug/examples/redis_queues \
  --dashboard dashboards/jobsight-queues.json \
  --rules dashboards/alerts.yml \
  --slo-rules dashboards/slo-alerts.yml
