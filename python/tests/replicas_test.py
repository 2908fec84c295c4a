"""DNS expansion of the nowcaster address in the Python client (nino._client.expand_replicas),
as the C++ client does it (client/remote_nowcaster_resolve.cc): a name stands for every address
it resolves to, IP literals stay, the job's order is the same rendezvous hashing. The C++ side is
asked directly (//client:replica_order_dump) for the same cases, with a fake DNS and with
getaddrinfo. Then a RemoteNowcaster that re-resolves a name after every replica failed, and TLS
checked against the name an address was resolved from."""

import json
import os
import random
import socket
import subprocess
import unittest

from nino import _client
from nino_test_util import (MLP, ROOT, FakeNowcaster, Nowcaster, data, make_opt, tmpdir,
                            train)


def make_server_cert(d, san):
    """ca.crt and server.{crt,key} (subjectAltName `san`) in `d`, made with openssl."""
    newkey = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    p = lambda name: os.path.join(d, name)  # noqa: E731
    with open(p("server.ext"), "w") as f:
        f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth\n" % san)
    for args in (("req", "-x509", *newkey, "-keyout", p("ca.key"), "-out", p("ca.crt"),
                  "-days", "2", "-subj", "/CN=nino py resolve test CA"),
                 ("req", *newkey, "-keyout", p("server.key"), "-out", p("server.csr"),
                  "-subj", "/CN=localhost"),
                 ("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.crt"), "-CAkey",
                  p("ca.key"), "-set_serial", "4099", "-days", "2", "-out", p("server.crt"),
                  "-extfile", p("server.ext"))):
        try:
            subprocess.run(("openssl",) + args, check=True, capture_output=True, timeout=60)
        except FileNotFoundError:
            raise RuntimeError("the openssl command is missing (tools/setup.sh installs "
                               "Debian's openssl package)") from None
    return p


def cpp_tool():
    for base in (ROOT, os.path.join(ROOT, "bazel-bin")):
        path = os.path.join(base, "client", "replica_order_dump")
        if os.path.exists(path):
            return path
    raise FileNotFoundError("client/replica_order_dump not found under %s (bazel build "
                            "//client:replica_order_dump)" % ROOT)


def cpp_answers(cases):
    """The C++ client's answers to [{"job_id", "addresses", "hosts"?}]: one dict each."""
    stdin = "".join(json.dumps(c) + "\n" for c in cases)
    p = subprocess.run([cpp_tool()], input=stdin, capture_output=True, text=True, timeout=60,
                       check=False)
    if p.returncode != 0:
        raise AssertionError("replica_order_dump exited %d: %s" % (p.returncode, p.stderr))
    answers = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    if len(answers) != len(cases):
        raise AssertionError("replica_order_dump answered %d of %d cases" %
                             (len(answers), len(cases)))
    return answers


class FakeDns:
    """names -> addresses; counts lookups; a name it lacks does not resolve."""

    def __init__(self, records=None):
        self.records = dict(records or {})
        self.lookups = 0

    def __call__(self, host):
        self.lookups += 1
        if host not in self.records:
            raise socket.gaierror(socket.EAI_NONAME, "no " + host)
        return self.records[host]


def addresses(replicas):
    return [r.address for r in replicas]


class ExpandReplicasTest(unittest.TestCase):
    # The cases of C++ client/remote_nowcaster_resolve_test.cc.

    def test_names_become_one_replica_per_address_literals_stay(self):
        dns = FakeDns({"nino-nowcaster-headless.nino.svc": ["10.0.0.7", "10.0.0.9", "fd00::3"]})
        replicas = _client.expand_replicas(
            " 10.1.1.1:50051, nino-nowcaster-headless.nino.svc:50051,[::1]:7,,10.1.1.1:50051",
            dns)
        self.assertEqual(addresses(replicas), ["10.1.1.1:50051", "10.0.0.7:50051",
                                               "10.0.0.9:50051", "[fd00::3]:50051", "[::1]:7"])
        self.assertEqual(dns.lookups, 1)  # literals are never looked up
        self.assertEqual(replicas[0].host_name, "")
        self.assertEqual(replicas[1].host_name, "nino-nowcaster-headless.nino.svc")
        self.assertEqual(replicas[3].host_name, "nino-nowcaster-headless.nino.svc")
        self.assertEqual(replicas[4].host_name, "")

    def test_unresolvable_portless_and_unix_entries_are_kept_as_given(self):
        dns = FakeDns()
        replicas = _client.expand_replicas("gone.example:1,noport,unix:/tmp/nino.sock", dns)
        self.assertEqual(addresses(replicas), ["gone.example:1", "noport", "unix:/tmp/nino.sock"])
        self.assertEqual([r.host_name for r in replicas], ["", "", ""])
        self.assertEqual(dns.lookups, 1)  # only gone.example

    def test_has_host_names(self):
        self.assertTrue(_client.has_host_names("10.0.0.1:1,svc:50051"))
        self.assertTrue(_client.has_host_names("localhost:1"))
        self.assertFalse(_client.has_host_names("10.0.0.1:1, [::1]:2"))
        self.assertFalse(_client.has_host_names("unix:/tmp/x"))
        self.assertFalse(_client.has_host_names(""))

    def test_order_is_rendezvous_over_the_expanded_addresses(self):
        dns = FakeDns({"svc": ["10.0.0.1", "10.0.0.2", "10.0.0.3"]})
        ordered = _client.order_replicas("job-7", _client.expand_replicas("svc:50051", dns))
        self.assertEqual(addresses(ordered), _client.replica_order(
            "job-7", "10.0.0.1:50051,10.0.0.2:50051,10.0.0.3:50051"))
        # Stable when the name loses a replica: the others keep their relative order.
        dns.records["svc"] = ["10.0.0.1", "10.0.0.3"]
        fewer = _client.order_replicas("job-7", _client.expand_replicas("svc:50051", dns))
        self.assertEqual(addresses(fewer),
                         [a for a in addresses(ordered) if a != "10.0.0.2:50051"])

    def test_system_resolver_on_localhost(self):
        ips = _client.resolve_host_system("localhost")
        self.assertTrue(ips)
        self.assertEqual(ips, sorted(set(ips)))
        for ip in ips:
            self.assertIn(ip, ("127.0.0.1", "::1"))
        replicas = _client.expand_replicas("localhost:4242")
        self.assertEqual(len(replicas), len(ips))
        self.assertEqual({r.host_name for r in replicas}, {"localhost"})
        with self.assertRaises(OSError):
            _client.resolve_host_system("no-such-host.invalid")


class CppAgreementTest(unittest.TestCase):
    """Python and the compiled C++ client give the same replica list, in the same order."""

    def check(self, cases):
        for case, cpp in zip(cases, cpp_answers(cases)):
            resolve = FakeDns(case["hosts"]) if "hosts" in case else None
            py = _client.order_replicas(case["job_id"],
                                        _client.expand_replicas(case["addresses"], resolve))
            self.assertEqual([list(r) for r in py], cpp["replicas"], case)
            self.assertEqual(_client.replica_order(case["job_id"], case["addresses"]),
                             cpp["order"], case)
        return cases

    def test_fake_dns(self):
        hosts = {"nino-nowcaster-headless.nino.svc.cluster.local":
                 ["10.244.1.17", "10.244.2.9", "10.244.3.4", "fd00:10:244::5"],
                 "svc": ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
                 "dup": ["10.0.0.2", "10.0.0.2"],
                 "empty": []}
        lists = ["nino-nowcaster-headless.nino.svc.cluster.local:50051",
                 "svc:50051",
                 " svc:7000 , 10.0.0.9:7000,,dup:7000",
                 "10.0.0.2:50051,svc:50051,[::1]:50051",
                 "gone:1,svc:2,noport,empty:3",
                 "a:1,b:2, c:3,,d:4",
                 "svc:50051,svc:50052"]
        rng = random.Random(11)
        cases = []
        for addresses_ in lists:
            for _ in range(12):
                job = "fm16-s%d-p%d-t%d" % (rng.randrange(100), rng.randrange(1 << 16),
                                            1700000000 + rng.randrange(10 ** 6))
                cases.append({"job_id": job, "addresses": addresses_, "hosts": hosts})
        self.check(cases)

    def test_system_resolver(self):
        cases = [{"job_id": "job-%d" % i, "addresses": a}
                 for i in range(8)
                 for a in ("localhost:4242", "127.0.0.1:1,localhost:2,[::1]:3")]
        self.check(cases)

    def test_bad_input_is_refused(self):
        p = subprocess.run([cpp_tool()], input='{"job_id": 3}\n', capture_output=True,
                           text=True, timeout=60, check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("line 1", p.stderr)


def client_for(address, resolver, **kw):
    from nino.v1 import nowcaster_pb2 as pb2
    return _client.RemoteNowcaster(
        address, kw.pop("job_id", "resolve-job"), [("w", (4, 4), pb2.DTYPE_FLOAT32)],
        "nino_no_posw", 20, 5, 100, 2.0, 0, timeout=5.0, rpc_timeout=2.0, resolver=resolver,
        **kw)


class ReResolutionTest(unittest.TestCase):
    def test_names_are_resolved_again_when_every_replica_failed(self):
        server = FakeNowcaster("ok")  # 127.0.0.1:PORT
        port = server.port
        # The name first points at a loopback address where nothing listens, then (a
        # rescheduled pod) at the server.
        dns = FakeDns({"svc": ["127.0.0.3"]})
        c = client_for("svc:%d" % port, dns, re_resolve_interval=3600.0)
        try:
            self.assertEqual(c.replicas, ["127.0.0.3:%d" % port])
            self.assertEqual(dns.lookups, 1)
            dns.records["svc"] = ["127.0.0.1"]
            with self.assertRaises(_client.NowcastFailure) as cm:
                c.register(timeout=5.0)
            self.assertEqual(cm.exception.code, "UNAVAILABLE")
            # The one replica failed: the name was looked up again at once (not after the
            # interval) and the job moved to the new address.
            self.assertEqual(dns.lookups, 2)
            self.assertEqual(c.replicas, ["127.0.0.1:%d" % port])
            self.assertEqual(c.address, "127.0.0.1:%d" % port)
            c.register(timeout=5.0)
            self.assertEqual(len(server.registrations), 1)
            # Registered: no lookup before further calls while the job has its replica.
            dns.records["svc"] = ["127.0.0.1", "127.0.0.4"]
            c.register(timeout=5.0)
            self.assertEqual(dns.lookups, 2)
            self.assertEqual(c.stats()["registrations"], 1)
        finally:
            c.close()
            server.stop()

    def test_an_unregistered_job_re_resolves_after_the_interval(self):
        server = FakeNowcaster("ok")
        port = server.port
        dns = FakeDns({"svc": ["127.0.0.3"]})
        c = client_for("svc:%d,127.0.0.5:%d" % (port, port), dns, re_resolve_interval=0.0)
        try:
            self.assertEqual(sorted(c.replicas), ["127.0.0.3:%d" % port, "127.0.0.5:%d" % port])
            dns.records["svc"] = ["127.0.0.1"]
            c.register(timeout=5.0)  # re-resolves first (interval 0), then registers
            self.assertEqual(c.address, "127.0.0.1:%d" % port)
            self.assertEqual(sorted(c.replicas), ["127.0.0.1:%d" % port, "127.0.0.5:%d" % port])
            self.assertEqual(len(server.registrations), 1)
        finally:
            c.close()
            server.stop()


class TlsNameTest(unittest.TestCase):
    """A server certificate that names only DNS:localhost (no IP SAN): a client given
    "localhost:PORT" connects to 127.0.0.1 (and ::1, if localhost has it) and checks the
    certificate against "localhost"; given "127.0.0.1:PORT" the same CA fails the name check."""

    @classmethod
    def setUpClass(cls):
        cls.p = staticmethod(make_server_cert(tmpdir(), "DNS:localhost"))
        p = cls.p
        cls.server = Nowcaster(extra=["--tls_cert=" + p("server.crt"),
                                      "--tls_key=" + p("server.key")])

    @classmethod
    def tearDownClass(cls):
        cls.server.kill()

    def run_steps(self, address, job):
        model = MLP()
        opt = make_opt(model, address, max_train_steps=40, timeout=5.0, job_id=job,
                       tls_ca_file=self.p("ca.crt"))
        order = opt.replicas
        train(opt, model, data(), 40)
        opt.close()
        return order, opt.stats

    def test_expanded_addresses_are_checked_against_the_name(self):
        port = self.server.port
        order, s = self.run_steps("localhost:%d" % port, "py-tls-name")
        expected = _client.order_replicas("py-tls-name",
                                          _client.expand_replicas("localhost:%d" % port))
        self.assertEqual(order, addresses(expected))
        self.assertIn("127.0.0.1:%d" % port, order)
        self.assertEqual((s["nino_steps"], s["nino_applied"], s["nino_failures"]), (2, 2, 0), s)

    def test_the_ip_address_does_not_match_the_certificate(self):
        _, s = self.run_steps("127.0.0.1:%d" % self.server.port, "py-tls-ip")
        self.assertEqual((s["nino_applied"], s["nino_failures"]), (0, 2), s)


if __name__ == "__main__":
    unittest.main()
