#!/usr/bin/env python3
"""Starts what deploy/base describes, the way Kubernetes would, on this machine.

Renders the manifests with `kubectl kustomize`, then for every container of
every Job and Deployment runs its command and args with exactly its env
(values from the rendered Secret and ConfigMap), the Jobs first and to
completion, then the Deployments until each answers gRPC health SERVING on its
probes. Fails when a Job container fails, a Deployment container exits, or a
probe never turns SERVING.

Only addresses change, because the pods would each have their own network:
- PostgreSQL URLs point at fresh databases on the local server (--postgres):
  a role used by a Job owns its databases (it may change the schema); every
  other role may only read and write, as the manifests' comments require;
- a container's own listen ports become free local ports, and
  `<service>:<port>` of a Service in the manifests the local port of the
  container behind it;
- `nats:4222` becomes the local NATS (--nats).

Usage: deploy-smoke.py --binary target/debug/concierge [--manifests deploy/base]
"""

import argparse
import base64
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
import uuid

import grpc
import yaml

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING = 1  # grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING
POLL = 0.1  # seconds between polls; every wait is bounded by a deadline


def fail(msg):
    raise SystemExit(f"deploy smoke: FAILED: {msg}")


def health_request(service):
    """HealthCheckRequest{service} in wire format (field 1, length-delimited)."""
    raw = service.encode()
    return b"\x0a" + varint(len(raw)) + raw if raw else b""


def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def health_status(response):
    """The `status` (field 1, varint) of a HealthCheckResponse; 0 = UNKNOWN."""
    if len(response) >= 2 and response[0] == 0x08:
        return response[1]
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(admin_url, sql, database=None):
    url = admin_url
    if database:
        url = urllib.parse.urlunsplit(urllib.parse.urlsplit(admin_url)._replace(path=f"/{database}"))
    out = subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        fail(f"psql: {sql}: {out.stderr.strip()}")
    return out.stdout.strip()


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


class Manifests:
    def __init__(self, path):
        rendered = subprocess.run(
            ["kubectl", "kustomize", path], capture_output=True, text=True, check=True
        ).stdout
        self.docs = [d for d in yaml.safe_load_all(rendered) if d]
        self.secrets = {}
        self.config_maps = {}
        for d in self.docs:
            name = d["metadata"]["name"]
            if d["kind"] == "Secret":
                data = {k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()}
                data.update(d.get("stringData") or {})
                self.secrets[name] = data
            elif d["kind"] == "ConfigMap":
                self.config_maps[name] = dict(d.get("data") or {})
        self.workloads = [d for d in self.docs if d["kind"] in ("Job", "Deployment")]
        # Kinds that run pods must be started too; the rest start nothing.
        unsupported = {d["kind"] for d in self.docs} & {
            "Pod", "ReplicaSet", "StatefulSet", "DaemonSet", "CronJob"
        }
        if unsupported:
            fail(f"the smoke test does not know how to start {sorted(unsupported)}: teach it")
        self.services = [d for d in self.docs if d["kind"] == "Service"]

    def env_of(self, workload, container):
        """A container's env as Kubernetes would give it, refs resolved."""
        env = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "secretRef" in source:
                values = self._lookup(self.secrets, source["secretRef"]["name"], None, workload)
            else:
                values = self._lookup(self.config_maps, source["configMapRef"]["name"], None, workload)
            env.update({prefix + k: v for k, v in values.items()})
        for var in container.get("env") or []:
            if "value" in var:
                env[var["name"]] = expand(var["value"], env)
                continue
            ref = var.get("valueFrom") or {}
            if "secretKeyRef" in ref:
                r = ref["secretKeyRef"]
                env[var["name"]] = self._lookup(self.secrets, r["name"], r["key"], workload)
            elif "configMapKeyRef" in ref:
                r = ref["configMapKeyRef"]
                env[var["name"]] = self._lookup(self.config_maps, r["name"], r["key"], workload)
            else:
                fail(f"{workload}: env {var['name']}: only value, secretKeyRef and configMapKeyRef are supported")
        return env

    @staticmethod
    def _lookup(objects, name, key, workload):
        if name not in objects:
            fail(f"{workload} reads {name!r}, which the manifests do not define")
        if key is None:
            return objects[name]
        if key not in objects[name]:
            fail(f"{workload} reads key {key!r} of {name!r}, which is missing")
        return objects[name][key]


def expand(value, env):
    """Kubernetes' $(VAR) expansion in values, command and args."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)


class Container:
    def __init__(self, workload, spec, manifests):
        self.kind = workload["kind"]
        self.workload = workload["metadata"]["name"]
        self.name = spec["name"]
        self.label = f"{self.kind}/{self.workload}/{self.name}"
        self.labels = workload["spec"]["template"]["metadata"].get("labels", {})
        self.spec = spec
        self.env = manifests.env_of(self.label, spec)
        # The container's own ports, each on a free local port.
        self.ports = {}
        self.port_names = {}
        for p in spec.get("ports") or []:
            local = free_port()
            self.ports[p["containerPort"]] = local
            if "name" in p:
                self.port_names[p["name"]] = p["containerPort"]
        self.proc = None
        self.log = None

    def local_port(self, port):
        if isinstance(port, str):
            if port not in self.port_names:
                fail(f"{self.label} has no port named {port!r}")
            port = self.port_names[port]
        if port not in self.ports:
            fail(f"{self.label} does not declare containerPort {port}")
        return self.ports[port]

    def probes(self):
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = self.spec.get(kind)
            if probe and "grpc" in probe:
                yield kind, self.local_port(probe["grpc"]["port"]), probe["grpc"].get("service", "")


def rewrite_addresses(containers, services, nats):
    """Maps every in-cluster address a value can name to a local one."""
    routes = {}
    for svc in services:
        name = svc["metadata"]["name"]
        ns = svc["metadata"].get("namespace", "default")
        selector = svc["spec"].get("selector") or {}
        backends = [
            c for c in containers
            if c.kind == "Deployment" and selector and all(c.labels.get(k) == v for k, v in selector.items())
        ]
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            owners = [c for c in backends if (target in c.port_names) or (target in c.ports)]
            if not owners:
                fail(f"Service {name} port {port['port']} reaches no container port {target!r}")
            local = f"127.0.0.1:{owners[0].local_port(target)}"
            for host in (name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"):
                routes[f"{host}:{port['port']}"] = local
    routes["nats:4222"] = nats

    def rewrite(c, value):
        for container_port, local in c.ports.items():
            value = re.sub(rf"\b(0\.0\.0\.0|\[::\]|127\.0\.0\.1):{container_port}\b", f"127.0.0.1:{local}", value)
        for remote, local in routes.items():
            value = re.sub(rf"(?<![\w.-]){re.escape(remote)}\b", local, value)
        return value

    return rewrite


class Databases:
    """Fresh local databases and roles behind the manifests' PostgreSQL URLs."""

    def __init__(self, admin_url, run):
        self.admin_url = admin_url
        self.run = run
        admin = urllib.parse.urlsplit(admin_url)
        self.netloc = f"{admin.hostname}:{admin.port or 5432}"
        self.owners = {}  # database → the Job role that owns it
        self.users = {}  # database → roles that only read and write
        self.created_dbs, self.created_roles = [], []

    def plan(self, containers):
        for c in containers:
            for value in c.env.values():
                u = self.parse(value)
                if u is None:
                    continue
                db, role = u.path.lstrip("/"), u.username
                if c.kind == "Job":
                    if self.owners.setdefault(db, role) != role:
                        fail(f"database {db} is migrated by two roles: {self.owners[db]} and {role}")
                else:
                    self.users.setdefault(db, set()).add(role)
        for db in self.users:
            if db not in self.owners:
                fail(f"no Job migrates database {db}, which {sorted(self.users[db])} use")
        for db, roles in self.users.items():
            if self.owners[db] in roles:
                fail(f"the services use the migration role {self.owners[db]} on {db}: give them their own")

    @staticmethod
    def parse(value):
        if not re.match(r"^postgres(ql)?://", value):
            return None
        return urllib.parse.urlsplit(value)

    def local(self, name):
        return f"{name}_{self.run}"

    def rewrite(self, value):
        u = self.parse(value)
        if u is None:
            return value
        auth = self.local(u.username)
        if u.password is not None:
            auth += ":" + u.password
        return urllib.parse.urlunsplit(
            u._replace(netloc=f"{auth}@{self.netloc}", path="/" + self.local(u.path.lstrip("/")))
        )

    def create(self):
        roles = set(self.owners.values()) | {r for rs in self.users.values() for r in rs}
        for role in sorted(roles):
            self.created_roles.append(self.local(role))  # before: an interrupt may land in between
            psql(self.admin_url, f"CREATE ROLE {quote_ident(self.local(role))} LOGIN")
        for db, owner in self.owners.items():
            local_db, owner = self.local(db), quote_ident(self.local(owner))
            self.created_dbs.append(local_db)
            psql(self.admin_url, f"CREATE DATABASE {quote_ident(local_db)} OWNER {owner}")
            # PostgreSQL before 15 lets everyone create in `public`.
            psql(self.admin_url, "REVOKE CREATE ON SCHEMA public FROM PUBLIC", local_db)
            for user in sorted(self.users.get(db, ())):
                user = quote_ident(self.local(user))
                for grant in (
                    f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {user}",
                    f"GRANT USAGE, SELECT ON SEQUENCES TO {user}",
                ):
                    psql(self.admin_url, f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public {grant}", local_db)

    def assert_no_ddl_rights(self):
        for db, users in self.users.items():
            for user in users:
                rights = psql(
                    self.admin_url,
                    f"SELECT has_schema_privilege('{self.local(user)}', 'public', 'CREATE'),"
                    f" has_database_privilege('{self.local(user)}', current_database(), 'CREATE')",
                    self.local(db),
                )
                if rights != "f|f":
                    fail(f"role {self.local(user)} may change the schema of {db} ({rights})")

    def drop(self):
        for db in self.created_dbs:
            psql(self.admin_url, f"DROP DATABASE IF EXISTS {quote_ident(db)} WITH (FORCE)")
        for role in self.created_roles:
            psql(self.admin_url, f"DROP ROLE IF EXISTS {quote_ident(role)}")


def start(c, binary, rewrite, dbs, logdir):
    env = {k: dbs.rewrite(rewrite(c, v)) for k, v in c.env.items()}
    command = [expand(a, env) for a in c.spec.get("command") or []]
    args = [rewrite(c, expand(a, env)) for a in c.spec.get("args") or []]
    if command:
        if os.path.basename(command[0]) != "concierge":
            fail(f"{c.label} runs {command[0]}, not the concierge binary")
        argv = [binary] + command[1:] + args
    else:
        argv = [binary] + args  # the image's ENTRYPOINT is the concierge binary
    c.log = open(os.path.join(logdir, c.label.replace("/", "_") + ".log"), "w+")
    c.argv = argv
    c.proc = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=c.log, stderr=subprocess.STDOUT, start_new_session=True
    )


def output_of(c):
    c.log.flush()
    c.log.seek(0)
    lines = c.log.read().splitlines()
    return "\n".join("    " + line for line in lines[-30:])


def stop(containers):
    running = [c for c in containers if c.proc and c.proc.poll() is None]
    for c in running:
        c.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 25
    for c in running:
        try:
            c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.proc.kill()
            c.proc.wait()


def healthy(port, service):
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        check = channel.unary_unary(HEALTH_CHECK)
        try:
            return health_status(check(health_request(service), timeout=1)) == SERVING
        except grpc.RpcError:
            return False


def events_flow(binary, deployments, rewrite, dbs, timeout):
    """A write through the gateway reaches the bus: its event leaves the outbox.

    Serving is not enough: without a bus configured a service serves happily
    and keeps every event in its outbox forever.
    """
    gateway = next((c for c in deployments if c.workload == "gateway"), None)
    if gateway is None:
        fail("no gateway Deployment to send a write through")
    gateway_db = dbs.rewrite(gateway.env["CONCIERGE_DATABASE__URL"])
    minted = subprocess.run(
        [binary, "keys", "create", "--role", "admin", "--display-name", "deploy smoke", "--database-url", gateway_db],
        capture_output=True, text=True, env={}, timeout=timeout,
    )
    if minted.returncode != 0:
        fail(f"concierge keys create: {minted.stderr.strip()}")
    key = minted.stdout.splitlines()[1]
    created = subprocess.run(
        [binary, "customers", "create", "--display-name", "Deploy Smoke Ltd", "--tier", "standard", "--time-zone", "Europe/Istanbul",
         "--gateway", f"http://127.0.0.1:{gateway.local_port('grpc')}", "--api-key", key],
        capture_output=True, text=True, env={}, timeout=timeout,
    )
    if created.returncode != 0:
        fail(f"creating an account through the gateway: {created.stderr.strip()}")
    outboxes = [
        db for db in dbs.users
        if psql(dbs.admin_url, "SELECT to_regclass('public.outbox') IS NOT NULL", dbs.local(db)) == "t"
    ]
    deadline = time.monotonic() + timeout
    while True:
        pending = {
            db: int(psql(dbs.admin_url, "SELECT count(*) FROM outbox WHERE publish_time = 0", dbs.local(db)))
            for db in outboxes
        }
        written = sum(
            int(psql(dbs.admin_url, "SELECT count(*) FROM outbox", dbs.local(db))) for db in outboxes
        )
        if written == 0:
            fail("creating an account wrote no event to any outbox")
        if not any(pending.values()):
            print(f"  {written} event(s) relayed from the outbox to NATS")
            return
        if time.monotonic() > deadline:
            fail(f"events never left the outbox within {timeout:.0f} s (is events.nats_url set?): {pending}")
        time.sleep(POLL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--manifests", default="deploy/base")
    ap.add_argument("--postgres", default=os.environ.get(
        "CONCIERGE_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--nats", default=urllib.parse.urlsplit(
        os.environ.get("CONCIERGE_TEST_NATS_URL", "nats://127.0.0.1:4222")).netloc)
    ap.add_argument("--timeout", type=float, default=40, help="seconds for the Jobs, then for health")
    opts = ap.parse_args()
    # CI's own timeout sends SIGTERM: still stop the processes and drop the databases.
    signal.signal(signal.SIGTERM, lambda *_: fail("terminated"))
    binary = os.path.abspath(opts.binary)
    if not os.access(binary, os.X_OK):
        fail(f"{binary} is not an executable: build it first")

    began = time.monotonic()
    manifests = Manifests(opts.manifests)
    containers = [
        Container(w, spec, manifests)
        for w in manifests.workloads
        for spec in w["spec"]["template"]["spec"]["containers"]
    ]
    jobs = [c for c in containers if c.kind == "Job"]
    deployments = [c for c in containers if c.kind == "Deployment"]
    if not jobs or not deployments:
        fail("expected at least one Job (the migrations) and one Deployment")
    rewrite = rewrite_addresses(containers, manifests.services, opts.nats)
    dbs = Databases(opts.postgres, "smoke_" + uuid.uuid4().hex[:10])
    dbs.plan(containers)
    logdir = tempfile.mkdtemp(prefix="concierge-deploy-smoke-")
    try:
        dbs.create()
        for c in jobs:
            start(c, binary, rewrite, dbs, logdir)
        deadline = time.monotonic() + opts.timeout
        for c in jobs:
            try:
                rc = c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                fail(f"{c.label} did not finish within {opts.timeout:.0f} s:\n{output_of(c)}")
            if rc != 0:
                fail(f"{c.label} exited with {rc}: {' '.join(c.argv)}\n{output_of(c)}")
            print(f"  {c.label}: completed")
        dbs.assert_no_ddl_rights()

        for c in deployments:
            start(c, binary, rewrite, dbs, logdir)
        waiting = {(c, kind, port, service) for c in deployments for kind, port, service in c.probes()}
        for c in deployments:
            if not any(w[0] is c for w in waiting):
                fail(f"{c.label} has no gRPC probe to wait on")
        deadline = time.monotonic() + opts.timeout
        while waiting:
            for c in deployments:
                if c.proc.poll() is not None:
                    fail(f"{c.label} exited with {c.proc.returncode}: {' '.join(c.argv)}\n{output_of(c)}")
            for w in list(waiting):
                c, kind, port, service = w
                if healthy(port, service):
                    print(f"  {c.label}: {kind} {service or '(server)'} SERVING")
                    waiting.discard(w)
            if not waiting:
                break
            if time.monotonic() > deadline:
                fail("never SERVING within {:.0f} s: {}\n{}".format(
                    opts.timeout,
                    ", ".join(f"{c.label} {kind} {service!r}" for c, kind, _, service in waiting),
                    "\n".join(f"  {c.label}:\n{output_of(c)}" for c in {w[0] for w in waiting}),
                ))
            time.sleep(POLL)
        events_flow(binary, deployments, rewrite, dbs, opts.timeout)
        # Still up after every check passed: none is on its way out.
        for c in deployments:
            if c.proc.poll() is not None:
                fail(f"{c.label} exited with {c.proc.returncode}\n{output_of(c)}")
        print(f"deploy smoke: {len(jobs)} Job and {len(deployments)} Deployment containers of "
              f"{opts.manifests} up in {time.monotonic() - began:.1f} s")
    finally:
        # Cleanup runs to the end even when the run was interrupted.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop(containers)
        for c in containers:
            if c.log:
                c.log.close()
        dbs.drop()
        shutil.rmtree(logdir, ignore_errors=True)


if __name__ == "__main__":
    main()
