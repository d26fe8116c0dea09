"""CreateCase through the gateway, production shape, on PostgreSQL.

Starts the gateway, customers and cases as three `concierge serve` processes on
fresh PostgreSQL databases, creates an account with a site, a business-hours
calendar and an SLA policy that every new repair case picks up (so a create arms
its clocks), then:

* counts, over a fixed number of sequential creates, the SQL statements the
  cases and customers databases executed (PostgreSQL's own log, with
  `log_statement = all` set on the two bench databases only) and the calls the
  cases service made to the customers service (its request counter);
* drives CreateCase closed-loop from 1 and 16 client processes (one gRPC
  connection each, Python grpcio: a client we did not write) and prints calls/s,
  p50 and p99.

Run on purpose, not in CI:

    python benches/create_case_pg.py --binary target/release/concierge

Needs grpcio-tools (the CI venv has it) and a local PostgreSQL whose user may
create databases and read the server log (this machine's trust auth).
"""

import argparse
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG = "postgres://postgres@127.0.0.1:5432"
DBS = {"gateway": "bench_gateway", "customers": "bench_customers", "cases": "bench_cases"}
PG_LOG = "/var/log/postgresql/postgresql-15-main.log"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(sql, db="postgres"):
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qAtc", sql], check=True)


def generate_stubs(out):
    protos = []
    for base, _, files in os.walk(os.path.join(ROOT, "proto")):
        protos += [os.path.join(base, f) for f in files if f.endswith(".proto")]
    import grpc_tools

    includes = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", os.path.join(ROOT, "proto"), "-I", includes,
         f"--python_out={out}", f"--grpc_python_out={out}", *protos],
        check=True,
    )
    sys.path.insert(0, out)


def wait_port(port, proc, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"a service exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"port {port} did not open")


def restart(procs, ports, *services):
    for svc in services:
        procs[svc].terminate()
        procs[svc].wait()
        procs["start"](svc)


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def peer_calls(text):
    total = 0.0
    for line in text.splitlines():
        if line.startswith("grpc_server_handled_total{") and "CustomersService" in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def new_request(svc, case_pb2, n):
    return svc.CreateCaseRequest(
        case=case_pb2.Case(
            title=f"Circuit down {n}",
            type=case_pb2.CASE_TYPE_REPAIR,
            account="accounts/bench",
            site="accounts/bench/sites/hq",
        ),
        request_id=str(uuid.uuid4()),
    )


def worker(args):
    target, key, stubs, seconds, start_at = args
    sys.path.insert(0, stubs)
    import grpc
    from concierge.cases.v1 import cases_service_pb2 as svc
    from concierge.cases.v1 import cases_service_pb2_grpc as svc_grpc
    from concierge.cases.v1 import case_pb2

    stub = svc_grpc.CasesServiceStub(grpc.insecure_channel(target))
    md = [("authorization", "Bearer " + key)]
    stub.CreateCase(new_request(svc, case_pb2, -1), metadata=md)  # connect outside the window
    while time.time() < start_at:
        time.sleep(0.001)
    lat = []
    end = start_at + seconds
    n = 0
    while time.time() < end:
        t0 = time.perf_counter()
        try:
            stub.CreateCase(new_request(svc, case_pb2, n), metadata=md)
        except grpc.RpcError as e:
            raise RuntimeError(f"CreateCase failed: {e.code()}: {e.details()}") from None
        lat.append(time.perf_counter() - t0)
        n += 1
    return lat


def pct(sorted_values, p):
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[i]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/concierge"))
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--count", type=int, default=100, help="sequential creates for the statement count")
    ap.add_argument("--clients", default="1,16")
    ap.add_argument("--then", default="",
                    help="a shell command run against the same stack once measured, with "
                         "CONCIERGE_GATEWAY, CONCIERGE_API_KEY and CONCIERGE_SERVER_PIDS set "
                         "(e.g. concierge bench load --gateway \"$CONCIERGE_GATEWAY\" ...)")
    a = ap.parse_args()

    for db in DBS.values():
        psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        psql(f"CREATE DATABASE {db}")
    env = dict(os.environ, CONCIERGE_INTERNAL__PRINCIPAL_SECRET="bench-secret-0123456789abcdef",
               CONCIERGE_TELEMETRY__LOG_FILTER="warn", RUST_LOG="warn")
    for svc, db in DBS.items():
        subprocess.run([a.binary, "migrate", svc], env=dict(env, CONCIERGE_DATABASE__URL=f"{PG}/{db}"),
                       check=True, stdout=subprocess.DEVNULL)
    ports = {s: free_port() for s in DBS}
    mports = {s: free_port() for s in DBS}
    procs = {}

    def start(svc):
        e = dict(env, CONCIERGE_DATABASE__URL=f"{PG}/{DBS[svc]}",
                 CONCIERGE_TELEMETRY__METRICS_LISTEN=f"127.0.0.1:{mports[svc]}",
                 CONCIERGE_BACKENDS__CUSTOMERS__URL=f"http://127.0.0.1:{ports['customers']}")
        if svc == "gateway":
            e["CONCIERGE_BACKENDS__CASES__URL"] = f"http://127.0.0.1:{ports['cases']}"
            # One bench key must not meet the per-principal limit: it is
            # the service being measured, not the limiter.
            e["CONCIERGE_LIMITS__REQUESTS_PER_SECOND"] = "1000000"
            e["CONCIERGE_LIMITS__BURST"] = "1000000"
        procs[svc] = subprocess.Popen([a.binary, "serve", svc, "--listen", f"127.0.0.1:{ports[svc]}"], env=e)
        wait_port(ports[svc], procs[svc])
        wait_port(mports[svc], procs[svc])

    procs["start"] = start
    try:
        for svc in ["customers", "cases", "gateway"]:
            start(svc)
        minted = subprocess.run(
            [a.binary, "keys", "create", "--role", "admin", "--display-name", "bench",
             "--database-url", f"{PG}/{DBS['gateway']}"],
            env=env, check=True, capture_output=True, text=True)
        key = minted.stdout.splitlines()[1].strip()
        stubs = tempfile.mkdtemp()
        generate_stubs(stubs)
        run(a, key, stubs, ports, mports, procs)
        if a.then:
            # Sessions opened while statements were logged still log them.
            restart(procs, ports, "customers", "cases")
            pids = ",".join(str(p.pid) for k, p in procs.items() if k != "start")
            subprocess.run(a.then, shell=True, check=True, env=dict(
                os.environ, CONCIERGE_GATEWAY=f"http://127.0.0.1:{ports['gateway']}",
                CONCIERGE_API_KEY=key, CONCIERGE_SERVER_PIDS=pids))
    finally:
        live = [p for k, p in procs.items() if k != "start"]
        for p in live:
            p.terminate()
        for p in live:
            p.wait()


def run(a, key, stubs, ports, mports, procs):
    import grpc
    from concierge.customers.v1 import customers_service_pb2 as csvc
    from concierge.customers.v1 import customers_service_pb2_grpc as csvc_grpc
    from concierge.customers.v1 import resources_pb2 as res
    from concierge.cases.v1 import cases_service_pb2 as svc
    from concierge.cases.v1 import cases_service_pb2_grpc as svc_grpc
    from concierge.cases.v1 import calendar_pb2, case_pb2, sla_pb2
    from concierge.types.v1 import time_zone_pb2
    from google.protobuf import duration_pb2

    target = f"127.0.0.1:{ports['gateway']}"
    md = [("authorization", "Bearer " + key)]
    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=30)
    customers = csvc_grpc.CustomersServiceStub(channel)
    cases = svc_grpc.CasesServiceStub(channel)
    deadline = time.time() + 30
    while True:
        try:
            customers.CreateAccount(csvc.CreateAccountRequest(
                account=res.Account(display_name="Bench Ltd", tier=res.TIER_ENTERPRISE, time_zone="America/Chicago",
                                    language_code="en"),
                account_id="bench"), metadata=md)
            break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or time.time() > deadline:
                raise
            time.sleep(0.2)
    customers.CreateSite(csvc.CreateSiteRequest(
        parent="accounts/bench", site=res.Site(display_name="HQ", time_zone="America/New_York"), site_id="hq"),
        metadata=md)
    weekdays = range(1, 6)
    cases.CreateCalendar(svc.CreateCalendarRequest(
        calendar=calendar_pb2.Calendar(
            display_name="US Central business hours",
            time_zone=time_zone_pb2.TimeZone(id="America/Chicago"),
            working_periods=[calendar_pb2.WorkingPeriod(weekday=d, start_minute=540, end_minute=1020)
                             for d in weekdays]),
        calendar_id="us-central"), metadata=md)
    hours = lambda h: duration_pb2.Duration(seconds=h * 3600)  # noqa: E731
    cases.CreateSlaPolicy(svc.CreateSlaPolicyRequest(
        sla_policy=sla_pb2.SlaPolicy(
            display_name="Repairs", case_types=[case_pb2.CASE_TYPE_REPAIR], calendar="calendars/us-central",
            first_response=sla_pb2.SlaTarget(key="first_response", display_name="first response", duration=hours(1)),
            overall_delivery=sla_pb2.SlaTarget(key="restore", display_name="restore", duration=hours(8))),
        sla_policy_id="repairs"), metadata=md)
    cases.CreateCase(new_request(svc, case_pb2, 0), metadata=md)

    for clients in [int(c) for c in a.clients.split(",")]:
        start_at = time.time() + 2.0
        # Spawned, not forked: a forked child of a process with live gRPC
        # channels can hang in grpc's fork handlers.
        with multiprocessing.get_context("spawn").Pool(clients) as pool:
            results = pool.map(worker, [(target, key, stubs, a.seconds, start_at)] * clients)
        lat = sorted(x for r in results for x in r)
        print(f"CreateCase, {clients:>2} clients: {len(lat) / a.seconds:8.1f} calls/s"
              f"  p50 {pct(lat, 50) * 1000:6.2f} ms  p99 {pct(lat, 99) * 1000:6.2f} ms  ({len(lat)} calls)",
              flush=True)

    # Statements and peer calls per create, over sequential creates. The
    # setting reaches new sessions only, so the two services are restarted
    # with it (and the load above ran without the cost of logging).
    for db in ("bench_cases", "bench_customers"):
        psql(f"ALTER DATABASE {db} SET log_statement = 'all'")
    restart(procs, ports, "customers", "cases")
    cases.CreateCase(new_request(svc, case_pb2, -2), metadata=md)  # pools warm
    stmt = re.compile(r"\[(\d+)\] \S*@(bench_\w+) LOG:  (?:statement|execute [^:]*): (.*)")

    def read_statements(since):
        """(pid, database, statement text) of every statement logged since `since`."""
        with open(PG_LOG, "rb") as f:
            f.seek(since)
            log = f.read().decode(errors="replace")
        return [m.groups() for m in map(stmt.search, log.splitlines()) if m]

    def count_statements(statements):
        counts = {}
        for _, db, _ in statements:
            counts[db] = counts.get(db, 0) + 1
        return counts

    def create_transactions(statements):
        """The cases database's transactions that insert a case: how many,
        and how many statements they hold (BEGIN and COMMIT included)."""
        open_tx, found, held = {}, 0, 0
        for pid, db, text in statements:
            if db != "bench_cases":
                continue
            word = text.strip().split(" ", 1)[0].upper()
            if word == "BEGIN":
                open_tx[pid] = [text]
                continue
            if pid not in open_tx:
                continue
            open_tx[pid].append(text)
            if word in ("COMMIT", "ROLLBACK"):
                tx = open_tx.pop(pid)
                if any(t.lstrip().upper().startswith("INSERT INTO CASES ") for t in tx):
                    found += 1
                    held += len(tx)
        return found, held

    # The services' workers poll (timer sweep, re-arm jobs, outbox relay):
    # their statements in an idle window of the same length are taken off.
    log_start = os.path.getsize(PG_LOG)
    peer_before = peer_calls(metrics(mports["customers"]))
    t0 = time.time()
    for n in range(a.count):
        cases.CreateCase(new_request(svc, case_pb2, n), metadata=md)
    window = time.time() - t0
    peer_after = peer_calls(metrics(mports["customers"]))
    busy_statements = read_statements(log_start)
    busy = count_statements(busy_statements)
    idle_start = os.path.getsize(PG_LOG)
    time.sleep(window)
    idle_statements = read_statements(idle_start)
    idle = count_statements(idle_statements)
    for db in ("bench_cases", "bench_customers"):
        psql(f"ALTER DATABASE {db} RESET log_statement")
    counts = {db: busy.get(db, 0) - idle.get(db, 0) for db in ("bench_cases", "bench_customers")}
    creates, in_creates = create_transactions(busy_statements)
    def commits(statements):
        return sum(1 for _, db, t in statements
                   if db == "bench_cases" and t.strip().upper() == "COMMIT")
    print(f"per create over {a.count} sequential creates ({window:.1f} s; the workers' polling in"
          f" an idle {window:.1f} s taken off: {idle.get('bench_cases', 0)} statements):")
    print(f"  SQL statements, cases database:     {counts.get('bench_cases', 0) / a.count:.1f}")
    if creates:
        print(f"    in the transaction that inserts the case: {in_creates / creates:.1f}"
              f" ({creates} such transactions)")
    print(f"  commits, cases database:            "
          f"{(commits(busy_statements) - commits(idle_statements)) / a.count:.2f}")
    print(f"  SQL statements, customers database: {counts.get('bench_customers', 0) / a.count:.1f}")
    print(f"  calls to the customers service:      {(peer_after - peer_before) / a.count:.2f}")


if __name__ == "__main__":
    main()
