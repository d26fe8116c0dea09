"""Closed-loop load on a running gateway from Python grpcio: a client we did not write.

One OS process per connection, each with its own gRPC channel, issuing calls
back to back. A server socket without TCP_NODELAY once made every reply wait
for the client's delayed ACK (~40 ms a call): grpcio showed it where a Rust
benchmark hid it, which is why `concierge bench load` (and CI) drives the
gateway with this script as well as with the SDK.

    python benches/load.py --gateway http://127.0.0.1:50050 --op get --connections 4 --seconds 10

The API key comes from --api-key or CONCIERGE_API_KEY (an admin key: the
seed creates accounts, a calendar and an SLA policy). Operations:

* create: CreateCase for a repair on the account `load-w`, each with a fresh
  `request_id`, as a real client sends; the seeded SLA policy arms its clocks.
* get:    GetCase over the seeded cases, round robin.
* list:   ListCases, one page of 20, filtered on one seeded account (round robin).
* mixed:  of every 10 calls, 1 create, 2 lists and 7 gets, in a fixed order.
* seed:   only make sure the seed exists, and print it.

The seed (4 accounts of 25 cases each, a 24x7 calendar, a repair SLA policy and
the account that creates go to) is made through the API before measuring, with
fixed ids, so a second run reuses it and creates land apart from what get and
list read: every run reads the same rows whatever ran before it.

Each process connects, waits for the others, warms up for --warmup seconds, then
measures until --seconds have passed or --count calls (over all processes) were
made, whichever comes first. Prints one JSON object:

    {"op", "connections", "client": "python", "calls", "errors": {CODE: n},
     "error_samples": {CODE: message}, "seconds", "rps", "p50_ms", "p99_ms",
     "client_cpu_s", "server_cpu_s"}

`client_cpu_s` is the user+sys CPU of the client processes over the measured
window (start-up, imports and warm-up left out), `server_cpu_s` that of the
--server-pid processes over the same window (null without them). Every non-OK
call, warm-up included, is counted in `errors`; `calls` and the latencies are
the measured window's. Exits 2 when any call failed.

Needs grpcio-tools (the CI venv has it): stubs are generated from proto/ into
--stubs (a temporary directory by default; pass one to reuse it across runs).
"""

import argparse
import json
import multiprocessing
import os
import queue
import resource
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS = ("create", "get", "list", "mixed")
ACCOUNTS = [f"load-{i}" for i in range(1, 5)]
CASES_PER_ACCOUNT = 25
WRITES_ACCOUNT = "load-w"
LIST_PAGE_SIZE = 20
# Of every 10 calls of the mixed workload: create first, lists at 3 and 7,
# gets elsewhere (10 % create, 20 % list, 70 % get).
MIX = ["create", "get", "get", "list", "get", "get", "get", "list", "get", "get"]


def seeded_cases():
    return [f"cases/{a}-c{n:02d}" for a in ACCOUNTS for n in range(1, CASES_PER_ACCOUNT + 1)]


def generate_stubs(out):
    marker = os.path.join(out, "concierge", "cases", "v1", "cases_service_pb2_grpc.py")
    if not os.path.exists(marker):
        import grpc_tools

        protos = []
        for base, _, files in os.walk(os.path.join(ROOT, "proto")):
            protos += [os.path.join(base, f) for f in files if f.endswith(".proto")]
        includes = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        # Into a fresh directory renamed into place: two runs sharing --stubs
        # never import a half-written package.
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        tmp = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(out)))
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", "-I", os.path.join(ROOT, "proto"), "-I", includes,
             f"--python_out={tmp}", f"--grpc_python_out={tmp}", *protos],
            check=True,
        )
        try:
            os.rename(tmp, out)
        except OSError:
            if not os.path.exists(marker):
                # `out` exists but holds no stubs (an empty directory given):
                # fill it in place.
                for name in os.listdir(tmp):
                    os.rename(os.path.join(tmp, name), os.path.join(out, name))
    sys.path.insert(0, out)


def target_of(gateway):
    """grpc target and whether it is TLS, from http://h:p, https://h:p or h:p."""
    if gateway.startswith("https://"):
        return gateway[len("https://"):].rstrip("/"), True
    if gateway.startswith("http://"):
        return gateway[len("http://"):].rstrip("/"), False
    return gateway, False


def open_channel(gateway):
    import grpc

    target, tls = target_of(gateway)
    if tls:
        return grpc.secure_channel(target, grpc.ssl_channel_credentials())
    return grpc.insecure_channel(target)


def cpu_of_pids(pids):
    """User+sys CPU seconds of processes, from /proc/<pid>/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            # The command name may hold spaces and parentheses: fields are
            # counted from the last ')'. utime and stime are fields 14 and 15.
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / tick


def own_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Calls:
    """The stubs and request builders every process uses."""

    def __init__(self, channel, key):
        from concierge.cases.v1 import case_pb2
        from concierge.cases.v1 import cases_service_pb2 as svc
        from concierge.cases.v1 import cases_service_pb2_grpc as svc_grpc
        from concierge.customers.v1 import customers_service_pb2 as csvc
        from concierge.customers.v1 import customers_service_pb2_grpc as csvc_grpc

        self.case_pb2, self.svc, self.csvc = case_pb2, svc, csvc
        self.cases = svc_grpc.CasesServiceStub(channel)
        self.customers = csvc_grpc.CustomersServiceStub(channel)
        self.md = [("authorization", "Bearer " + key)]

    def create(self, n):
        return self.cases.CreateCase(
            self.svc.CreateCaseRequest(
                case=self.case_pb2.Case(
                    title=f"Circuit down {n}",
                    type=self.case_pb2.CASE_TYPE_REPAIR,
                    account=f"accounts/{WRITES_ACCOUNT}",
                ),
                request_id=str(uuid.uuid4()),
            ),
            metadata=self.md,
        )

    def get(self, name):
        return self.cases.GetCase(self.svc.GetCaseRequest(name=name), metadata=self.md)

    def list(self, account):
        return self.cases.ListCases(
            self.svc.ListCasesRequest(page_size=LIST_PAGE_SIZE, filter=f'account = "accounts/{account}"'),
            metadata=self.md,
        )


def seed(gateway, key):
    """Makes sure the seed exists, through the API; ALREADY_EXISTS is fine."""
    import grpc
    from concierge.cases.v1 import calendar_pb2, case_pb2, sla_pb2
    from concierge.customers.v1 import resources_pb2 as res
    from concierge.types.v1 import time_zone_pb2
    from google.protobuf import duration_pb2

    cases = seeded_cases()
    channel = open_channel(gateway)
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
        c = Calls(channel, key)
        try:
            c.get(cases[-1])
            return cases
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise

        def create(call, request):
            try:
                call(request, metadata=c.md)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise

        for account in ACCOUNTS + [WRITES_ACCOUNT]:
            create(c.customers.CreateAccount, c.csvc.CreateAccountRequest(
                account=res.Account(display_name=f"Load {account}", tier=res.TIER_ENTERPRISE,
                                    time_zone="America/Chicago", language_code="en"),
                account_id=account))
        create(c.cases.CreateCalendar, c.svc.CreateCalendarRequest(
            calendar=calendar_pb2.Calendar(
                display_name="Around the clock", time_zone=time_zone_pb2.TimeZone(id="UTC"),
                working_periods=[calendar_pb2.WorkingPeriod(weekday=d, start_minute=0, end_minute=1440)
                                 for d in range(1, 8)]),
            calendar_id="load-24x7"))
        create(c.cases.CreateSlaPolicy, c.svc.CreateSlaPolicyRequest(
            sla_policy=sla_pb2.SlaPolicy(
                display_name="Load repairs", case_types=[case_pb2.CASE_TYPE_REPAIR], calendar="calendars/load-24x7",
                first_response=sla_pb2.SlaTarget(key="first_response", display_name="first response",
                                                 duration=duration_pb2.Duration(seconds=3600))),
            sla_policy_id="load-repairs"))
        for name in cases:
            case_id = name.split("/", 1)[1]
            account = case_id.rsplit("-c", 1)[0]
            create(c.cases.CreateCase, c.svc.CreateCaseRequest(
                case=case_pb2.Case(title=f"Seeded {case_id}", type=case_pb2.CASE_TYPE_REPAIR,
                                   account=f"accounts/{account}"),
                case_id=case_id, request_id=f"load-seed-{case_id}"))
        return cases
    finally:
        channel.close()


def worker(index, a, stubs, key, cases, barrier, results):
    try:
        sys.path.insert(0, stubs)
        import grpc

        channel = open_channel(a.gateway)
        grpc.channel_ready_future(channel).result(timeout=60)
        c = Calls(channel, key)
        # Each process starts at its own place in the rotation, so 64
        # processes do not all read the same case at once.
        n = index * 7
        op = a.op

        def call(n):
            kind = MIX[n % len(MIX)] if op == "mixed" else op
            if kind == "create":
                c.create(n)
            elif kind == "get":
                c.get(cases[n % len(cases)])
            else:
                c.list(ACCOUNTS[n % len(ACCOUNTS)])

        errors, samples = {}, {}

        def failed(e):
            code = e.code().name
            errors[code] = errors.get(code, 0) + 1
            samples.setdefault(code, e.details())

        barrier.wait(timeout=300)
        warm_until = time.monotonic() + a.warmup
        while time.monotonic() < warm_until:
            try:
                call(n)
            except grpc.RpcError as e:
                failed(e)
            n += 1
        quota = -(-a.count // a.connections) if a.count else None
        lat = []
        cpu0, start = own_cpu(), time.monotonic()
        end = start + a.seconds
        while time.monotonic() < end and (quota is None or len(lat) < quota):
            t0 = time.perf_counter()
            try:
                call(n)
            except grpc.RpcError as e:
                failed(e)
            lat.append(time.perf_counter() - t0)
            n += 1
        stop = time.monotonic()
        results.put({"lat": lat, "errors": errors, "samples": samples, "cpu": own_cpu() - cpu0,
                     "start": start, "stop": stop})
        channel.close()
    except BaseException:
        results.put({"fatal": f"process {index}: {traceback.format_exc()}"})


def pct(sorted_values, p):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def measure(a, stubs, key, cases, server_pids):
    # Spawned, not forked: a forked child of a process that has used gRPC
    # can hang in grpc's fork handlers.
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(a.connections + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(i, a, stubs, key, cases, barrier, results), daemon=True)
             for i in range(a.connections)]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=300)
        # The processes measure from the end of their warm-up on; the server's
        # CPU is read then too, so both cover the same window.
        time.sleep(a.warmup)
        server0 = cpu_of_pids(server_pids) if server_pids else None
        got = []
        deadline = time.monotonic() + a.seconds + 120
        while len(got) < len(procs):
            try:
                r = results.get(timeout=1)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline:
                    raise SystemExit(f"a client process died or hung (exit codes {[p.exitcode for p in procs]})")
                continue
            if "fatal" in r:
                raise SystemExit(r["fatal"])
            got.append(r)
        server1 = cpu_of_pids(server_pids) if server_pids else None
        for p in procs:
            p.join(timeout=30)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    lat = sorted(x for r in got for x in r["lat"])
    errors, samples = {}, {}
    for r in got:
        for code, count in r["errors"].items():
            errors[code] = errors.get(code, 0) + count
        for code, message in r["samples"].items():
            samples.setdefault(code, message)
    window = max(r["stop"] for r in got) - min(r["start"] for r in got)
    ms = lambda v: None if v is None else round(v * 1000, 3)  # noqa: E731
    return {
        "op": a.op,
        "connections": a.connections,
        "client": "python",
        "calls": len(lat),
        "errors": errors,
        "error_samples": samples,
        "seconds": round(window, 3),
        "rps": round(len(lat) / window, 1) if window > 0 else 0.0,
        "p50_ms": ms(pct(lat, 50)),
        "p99_ms": ms(pct(lat, 99)),
        "client_cpu_s": round(sum(r["cpu"] for r in got), 3),
        "server_cpu_s": None if server0 is None else round(server1 - server0, 3),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gateway", default=os.environ.get("CONCIERGE_GATEWAY", "http://127.0.0.1:50050"))
    ap.add_argument("--api-key", default=os.environ.get("CONCIERGE_API_KEY"))
    ap.add_argument("--op", choices=OPS + ("seed",), required=True)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0, help="measured window, at most")
    ap.add_argument("--count", type=int, default=0, help="calls over all connections, at most (0: no bound)")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of calls before measuring")
    ap.add_argument("--server-pid", default="", help="comma-separated pids whose CPU to report")
    ap.add_argument("--stubs", help="directory for the generated stubs (reused when present)")
    a = ap.parse_args()
    if not a.api_key:
        ap.error("an API key: --api-key or CONCIERGE_API_KEY")
    if a.connections < 1 or a.seconds <= 0 or a.count < 0 or a.warmup < 0:
        ap.error("--connections ≥ 1, --seconds > 0, --count ≥ 0, --warmup ≥ 0")
    server_pids = [int(p) for p in a.server_pid.split(",") if p.strip()]

    stubs = a.stubs or os.path.join(tempfile.mkdtemp(), "stubs")
    generate_stubs(stubs)
    cases = seed(a.gateway, a.api_key)
    if a.op == "seed":
        print(json.dumps({"cases": cases, "accounts": [f"accounts/{x}" for x in ACCOUNTS],
                          "writes_account": f"accounts/{WRITES_ACCOUNT}", "list_page_size": LIST_PAGE_SIZE,
                          "mix": MIX}))
        return 0
    out = measure(a, stubs, a.api_key, cases, server_pids)
    print(json.dumps(out), flush=True)
    if out["errors"]:
        print(f"load.py: {sum(out['errors'].values())} calls failed: {out['error_samples']}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
