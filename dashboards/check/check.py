#!/usr/bin/env python3
"""Evaluates the dashboard's and the alert rules' PromQL on a real Prometheus.

Started by run.sh. Standard library only. Starts two processes of the
redis_queues example on the same three queues (Redis: `emails`, `reports`
with aborted jobs, `ledger` which stalls on purpose), each with its own
scrape endpoint, and a Prometheus (1 s scrape and evaluation) that scrapes
both and loads three variants of the rules: as written, "fast" and "open"
(thresholds removed or always true; see alerts.yml), and the SLO rules
(slo-alerts.yml) as written. Then it asserts:

- every queue's metrics come from both processes (two `instance`s), so that
  every expression below is evaluated across instances;
- every target of every dashboard panel returns a series for each queue,
  aggregated across the processes (no `instance` label left);
- at one instant, the throughput panel is the sum of the processes' rates and
  the depth panel the highest of the pollers' readings (not their sum);
- the queue variable's label_values query lists each queue;
- every rule as written evaluates without error;
- every rule of the "open" variant returns one series for each queue, with
  no `instance` label;
- in the "fast" variant, JobQueueFallingBehind and JobQueueNotProcessing fire
  for the stalled `ledger` queue only, JobFailureRateHigh for `reports` only;
- every SLO rule is healthy; each recording rule has a series per queue and
  each SLO alert evaluates (its firing and resolving is unit-tested by
  `promtool test rules dashboards/slo-alerts.test.yml`).

Processes are stopped (SIGTERM, then SIGKILL) however the check ends. It gives
up after --deadline seconds. Prints `N passed, N failed` at the end.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

QUEUE_LABEL = "messaging_destination_name"

# Text substitutions that derive the variants from alerts.yml; each `old`
# must occur exactly `count` times (None: at least once, regex).
FAST = [
    ("(job_queue_oldest_age_seconds)\n          ) > 300",
     "(job_queue_oldest_age_seconds)\n          ) > 10", 1),
    ("rate(messaging_client_consumed_messages_total[15m])",
     "rate(messaging_client_consumed_messages_total[10s])", 1),
    (re.compile(r"for: \d+m"), "for: 1s", None),
]
OPEN = [
    ("(job_queue_oldest_age_seconds)\n          ) > 300",
     "(job_queue_oldest_age_seconds)\n          ) >= 0", 1),
    # No threshold at all: a queue with no finished attempt in the window
    # has a NaN ratio, which no comparison lets through.
    ("\n          > 0.05\n", "\n", 1),
    ("(job_queue_depth)\n          ) > 0", "(job_queue_depth)\n          ) >= 0", 1),
    ("[15m])) > 0", "[15m])) > 1e300", 1),
]
# Which queues each "fast" alert must fire for (the others must not).
FIRES = {
    "JobQueueFallingBehind": {"ledger"},
    "JobQueueNotProcessing": {"ledger"},
    "JobFailureRateHigh": {"reports"},
}
QUEUES = ("emails", "reports", "ledger")
# Processes of the example running at once, on the same queues.
PROCESSES = 2
# Labels that identify a process; no panel or rule may leave them in its result.
PROCESS_LABELS = ("instance",)
# Grafana variables, as Grafana would expand them with "All" selected.
GRAFANA_VARS = {"$queue": ".*", "$__rate_interval": "30s"}


class Check:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, condition, what, detail=""):
        if condition:
            self.passed += 1
            print(f"  ok    {what}")
        else:
            self.failed += 1
            print(f"  FAIL  {what}: {detail}")
        return condition


def derive(text, substitutions):
    for old, new, count in substitutions:
        if isinstance(old, re.Pattern):
            text, n = old.subn(new, text)
            if n == 0:
                raise SystemExit(f"check.py: pattern {old.pattern!r} not found in the rules")
        else:
            n = text.count(old)
            if n != count:
                raise SystemExit(f"check.py: {old!r} occurs {n} times in the rules, expected {count}")
            text = text.replace(old, new)
    return text


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, params=None, timeout=5):
    if params:
        url += "?" + urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode())


def dashboard_queries(dashboard):
    """(panel title, legend, expr) of every target, rows' panels included."""
    out = []

    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    out.append((panel["title"], target.get("legendFormat", ""), target["expr"]))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    return out


def expand(expr):
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return expr


def short(queue, prefix):
    return queue[len(prefix):] if queue.startswith(prefix) else queue


def fmt(value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "NaN" if v != v else f"{v:.3g}"


def redis_command(sock, *args):
    """Sends one command in RESP and reads its reply (enough for SCAN/DEL/ZREM)."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(str(a).encode())}\r\n{a}\r\n" for a in args)
    sock.sendall(payload.encode())
    reader = sock.makefile("rb")

    def read():
        line = reader.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b":"):
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = reader.read(n + 2)[:-2]
            return data.decode()
        if kind == b"*":
            return [read() for _ in range(int(rest))]
        raise RuntimeError(f"unexpected reply {line!r}")

    return read()


def delete_demo_keys(prefix):
    """Deletes what the example left in Redis, once it has exited."""
    with socket.create_connection(("127.0.0.1", 6379), timeout=5) as sock:
        cursor, deleted = "0", 0
        while True:
            cursor, keys = redis_command(sock, "SCAN", cursor, "MATCH", f"{prefix}*", "COUNT", 1000)
            if keys:
                deleted += int(redis_command(sock, "DEL", *keys))
            if cursor == "0":
                break
        for queue in QUEUES:
            redis_command(sock, "ZREM", "core:apalis:queues:list", f"{prefix}{queue}:workers")
    return deleted


def stop(process, name):
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        print(f"check.py: {name} did not stop on SIGTERM; killing it")
        process.kill()
        process.wait(timeout=5)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--example", required=True)
    parser.add_argument("--dashboard", required=True)
    parser.add_argument("--rules", required=True)
    parser.add_argument("--slo-rules", required=True)
    parser.add_argument("--deadline", type=float,
                        default=float(os.environ.get("JOBSIGHT_CHECK_DEADLINE", "180")))
    args = parser.parse_args()
    started = time.monotonic()
    deadline = started + args.deadline

    dashboard = json.load(open(args.dashboard))
    rules = open(args.rules).read()
    variants = {"fast": derive(rules, FAST), "open": derive(rules, OPEN)}
    work = tempfile.mkdtemp(prefix="jobsight-dashboards-")
    prefix = f"ci{os.getpid()}-"
    worker_ports, prom_port = [free_port() for _ in range(PROCESSES)], free_port()
    files = {
        "as-written": args.rules,
        "fast": os.path.join(work, "alerts-fast.yml"),
        "open": os.path.join(work, "alerts-open.yml"),
        "slo": args.slo_rules,
    }
    for name, text in variants.items():
        open(files[name], "w").write(text)
    config = os.path.join(work, "prometheus.yml")
    open(config, "w").write(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [os.path.abspath(f) for f in files.values()],
        "scrape_configs": [{
            "job_name": "jobsight-demo",
            "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in worker_ports]}],
        }],
    }))

    examples, prometheus = [], None
    logs = [f"example-{n}.log" for n in range(1, PROCESSES + 1)] + ["prometheus.log"]
    check = Check()
    try:
        for port, log in zip(worker_ports, logs):
            env = dict(os.environ,
                       JOBSIGHT_METRICS_ADDR=f"127.0.0.1:{port}",
                       JOBSIGHT_DEMO_PREFIX=prefix,
                       JOBSIGHT_POLL_MS="500",
                       JOBSIGHT_DEMO_SECONDS=str(int(args.deadline) + 10))
            for var in [v for v in env if v.startswith("OTEL_")]:
                del env[var]
            examples.append(subprocess.Popen([args.example], env=env, stdout=subprocess.DEVNULL,
                                             stderr=open(os.path.join(work, log), "w")))
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(work, 'tsdb')}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "prometheus.log"), "w"))
        api = f"http://127.0.0.1:{prom_port}/api/v1"
        queues = {f"{prefix}{q}" for q in QUEUES}

        def rules_by_file():
            groups = get(f"{api}/rules")["data"]["groups"]
            out = {}
            for group in groups:
                for name, path in files.items():
                    if os.path.abspath(group["file"]) == os.path.abspath(path):
                        for rule in group["rules"]:
                            out[(name, rule["name"])] = rule
            return out

        def firing(rule):
            return {a["labels"].get(QUEUE_LABEL) for a in rule.get("alerts", [])
                    if a["state"] == "firing"}

        # Wait until every queue has data and the "fast" alerts have had
        # time to fire (the ledger queue stalls after its first jobs).
        print(f"dashboards: Prometheus on 127.0.0.1:{prom_port} scraping {PROCESSES} example "
              f"processes on {', '.join(f'127.0.0.1:{p}' for p in worker_ports)}; "
              f"queues {', '.join(sorted(queues))}")
        ready_at = None
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("the queues did not reach the expected state in time")
            for process, name in ([(e, f"example {n}") for n, e in enumerate(examples, 1)]
                                  + [(prometheus, "prometheus")]):
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited early with {process.returncode}; "
                                       f"logs in {work}")
            time.sleep(1)
            try:
                # Queues with data from every process (and every poller).
                seen = set.intersection(*(
                    {r["metric"].get(QUEUE_LABEL) for r in get(f"{api}/query", {
                        "query": f"count by ({QUEUE_LABEL}) (count by ({QUEUE_LABEL}, instance) "
                                 f"({metric})) >= {PROCESSES}"})["data"]["result"]}
                    for metric in ("messaging_process_duration_seconds_count", "job_queue_depth")))
                by_file = rules_by_file()
            except OSError:
                continue
            fast_ok = all(
                firing(by_file.get(("fast", alert), {})) >= {f"{prefix}{q}" for q in want}
                for alert, want in FIRES.items())
            if queues <= seen and fast_ok and ready_at is None:
                ready_at = time.monotonic()
            # A few more seconds, so that a healthy queue that would fire wrongly can.
            if ready_at is not None and time.monotonic() - ready_at >= 3:
                break
        print(f"dashboards: ready after {time.monotonic() - started:.0f} s")

        # One instant for the comparisons below: every query sees the same data.
        at = time.time() - 1

        def query(expr):
            return get(f"{api}/query", {"query": expr, "time": f"{at:.3f}"})["data"]["result"]

        print(f"across instances ({PROCESSES} processes)")
        for metric in ("messaging_client_consumed_messages_total", "job_queue_depth"):
            per_queue = {}
            for s in query(metric):
                per_queue.setdefault(s["metric"].get(QUEUE_LABEL), set()).add(
                    s["metric"].get("instance"))
            check.ok(all(len(per_queue.get(q, ())) == PROCESSES for q in queues),
                     f"{metric}: series from {PROCESSES} instances for each queue",
                     f"{ {short(q, prefix): sorted(i) for q, i in per_queue.items()} }")

        def by_queue(series):
            return {s["metric"].get(QUEUE_LABEL): float(s["value"][1]) for s in series}

        def panel_expr(title):
            return next(expand(e) for t, _, e in dashboard_queries(dashboard) if t == title)

        per_instance = {}
        for s in query("rate(messaging_client_consumed_messages_total[30s])"):
            q = s["metric"].get(QUEUE_LABEL)
            per_instance[q] = per_instance.get(q, 0.0) + float(s["value"][1])
        panel = by_queue(query(panel_expr("Throughput")))
        check.ok(all(q in panel and abs(panel[q] - per_instance.get(q, -1)) < 1e-9 for q in queues),
                 "Throughput: the sum of the processes' rates: "
                 + " ".join(f"{short(q, prefix)}={fmt(panel.get(q))}" for q in sorted(queues)),
                 f"per instance summed: {per_instance}")
        readings = {}
        for s in query("job_queue_depth"):
            readings.setdefault(s["metric"].get(QUEUE_LABEL), []).append(float(s["value"][1]))
        panel = by_queue(query(panel_expr("Depth")))
        check.ok(all(q in panel and panel[q] == max(readings.get(q, [-1])) for q in queues),
                 "Depth: the highest poller reading, not a sum: "
                 + " ".join(f"{short(q, prefix)}={fmt(panel.get(q))} of "
                            f"{'/'.join(fmt(v) for v in readings.get(q, []))}"
                            for q in sorted(queues)),
                 f"panel {panel}")

        def leftover(series):
            return sorted({label for s in series for label in PROCESS_LABELS if label in s["metric"]})

        print("dashboard panels (Grafana variables: "
              + ", ".join(f"{k} -> {v}" for k, v in GRAFANA_VARS.items()) + ")")
        for title, legend, expr in dashboard_queries(dashboard):
            result = get(f"{api}/query", {"query": expand(expr)})
            series = result["data"]["result"]
            got = {}
            for s in series:
                got.setdefault(short(s["metric"].get(QUEUE_LABEL, "?"), prefix), []).append(
                    fmt(s["value"][1]))
            check.ok(queues <= {s["metric"].get(QUEUE_LABEL) for s in series}
                     and not leftover(series),
                     f"{title} [{legend}]: {len(series)} series "
                     + " ".join(f"{q}={'/'.join(v)}" for q, v in sorted(got.items())),
                     f"expected one series per queue, none with {PROCESS_LABELS} "
                     f"(left: {leftover(series)}); query: {expand(expr)}")

        for variable in dashboard["templating"]["list"]:
            query = variable.get("query")
            if isinstance(query, dict):
                query = query.get("query")
            match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query or "")
            if not match:
                continue
            metric, label = match.groups()
            values = set(get(f"{api}/label/{label}/values", {"match[]": metric})["data"])
            check.ok(queues <= values,
                     f"variable ${variable['name']}: label_values({metric}, {label}) lists "
                     + ", ".join(sorted(short(v, prefix) for v in values & queues)),
                     f"got {sorted(values)}")

        print("alert rules")
        by_file = rules_by_file()
        names = sorted({name for (file, name) in by_file if file != "slo"})
        for name in names:
            written = by_file.get(("as-written", name))
            if check.ok(written is not None, f"{name}: loaded as written"):
                result = get(f"{api}/query", {"query": written["query"]})
                firing_now = sorted(short(s["metric"].get(QUEUE_LABEL, "?"), prefix)
                                    for s in result["data"]["result"])
                check.ok(result["status"] == "success",
                         f"{name} as written evaluates; over threshold now: "
                         f"{', '.join(firing_now) or 'none'}", json.dumps(result)[:300])
            opened = by_file.get(("open", name))
            result = get(f"{api}/query", {"query": opened["query"]})["data"]["result"]
            got = {short(s["metric"].get(QUEUE_LABEL, "?"), prefix): fmt(s["value"][1])
                   for s in result}
            check.ok(queues <= {s["metric"].get(QUEUE_LABEL) for s in result}
                     and not leftover(result) and len(result) == len(got),
                     f"{name} (open thresholds): one series per queue: "
                     + " ".join(f"{q}={v}" for q, v in sorted(got.items())),
                     f"query: {opened['query']}")
            fast = by_file.get(("fast", name))
            if name in FIRES:
                want = {f"{prefix}{q}" for q in FIRES[name]}
                fired = {q for q in firing(fast) if q}
                check.ok(fired == want,
                         f"{name} (fast: for 1s): firing for "
                         f"{', '.join(sorted(short(q, prefix) for q in fired)) or 'none'}",
                         f"expected {sorted(FIRES[name])}; query: {fast['query']}")
        check.ok(set(FIRES) <= set(names), "every expected alert is in the rules file",
                 f"{sorted(set(FIRES) - set(names))} missing")

        print("SLO rules (slo-alerts.yml)")
        slo = {name: rule for (file, name), rule in by_file.items() if file == "slo"}
        check.ok(len(slo) >= 2, f"SLO rules loaded: {len(slo)} names", "none loaded")
        for name, rule in sorted(slo.items()):
            check.ok(rule.get("health") == "ok", f"{name}: healthy",
                     f"{rule.get('health')}: {rule.get('lastError')}")
            result = get(f"{api}/query", {"query": rule["query"]})
            series = result["data"]["result"]
            if rule.get("type") == "recording":
                got = {short(s["metric"].get(QUEUE_LABEL, "?"), prefix): fmt(s["value"][1])
                       for s in series}
                check.ok(queues <= {s["metric"].get(QUEUE_LABEL) for s in series},
                         f"{name}: a series per queue: "
                         + " ".join(f"{q}={v}" for q, v in sorted(got.items())),
                         f"query: {rule['query']}")
            else:
                check.ok(result["status"] == "success",
                         f"{name} evaluates; over threshold now: "
                         + (", ".join(sorted(short(s["metric"].get(QUEUE_LABEL, "?"), prefix)
                                             for s in series)) or "none"),
                         json.dumps(result)[:300])
    except Exception as error:  # noqa: BLE001 - report, clean up, fail
        check.ok(False, "the check ran to the end", f"{type(error).__name__}: {error}")
        for log in logs:
            path = os.path.join(work, log)
            if os.path.exists(path):
                print(f"--- last lines of {log}")
                print("".join(open(path).readlines()[-15:]))
    finally:
        stop(prometheus, "prometheus")
        for n, example in enumerate(examples, 1):
            stop(example, f"example {n}")
        shutil.rmtree(work, ignore_errors=True)
        try:
            left = delete_demo_keys(prefix)
            print(f"dashboards: deleted {left} Redis keys the example left behind")
        except (OSError, RuntimeError) as error:
            print(f"dashboards: could not clean Redis up: {error}")

    print(f"dashboards: took {time.monotonic() - started:.0f} s")
    print(f"{check.passed} passed, {check.failed} failed")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
