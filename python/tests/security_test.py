"""NowcastOptimizer against a nino_nowcaster with mutual TLS and bearer tokens (certificates
made with Debian's openssl at test time): with the CA, a client certificate and its token the
NiNo steps are applied; without the CA, the client certificate or the token they are not; a bad
credentials file fails at construction."""

import os
import subprocess
import unittest

import nino
from nino_test_util import MLP, Nowcaster, data, make_opt, tmpdir, train

TOKEN = "py-trainer-0123456789abcdef"


def openssl(*args):
    try:
        subprocess.run(("openssl",) + args, check=True, capture_output=True)
    except FileNotFoundError:
        raise RuntimeError("the openssl command is missing (tools/setup.sh installs Debian's "
                           "openssl package)") from None


def make_pki(d):
    """ca.crt, server.{crt,key} (localhost / 127.0.0.1), client.{crt,key} in `d`."""
    newkey = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    p = lambda name: os.path.join(d, name)
    openssl("req", "-x509", *newkey, "-keyout", p("ca.key"), "-out", p("ca.crt"), "-days", "2",
            "-subj", "/CN=nino py test CA")
    for name, cn, ext in (("server", "localhost",
                           "subjectAltName=DNS:localhost,IP:127.0.0.1\n"),
                          ("client", "py-trainer", "extendedKeyUsage=clientAuth\n")):
        with open(p(name + ".ext"), "w") as f:
            f.write(ext)
        openssl("req", *newkey, "-keyout", p(name + ".key"), "-out", p(name + ".csr"),
                "-subj", "/CN=" + cn)
        openssl("x509", "-req", "-in", p(name + ".csr"), "-CA", p("ca.crt"), "-CAkey",
                p("ca.key"), "-set_serial", str(len(cn) + 100), "-days", "2", "-out",
                p(name + ".crt"), "-extfile", p(name + ".ext"))
    return p


class SecurityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        d = tmpdir()
        p = make_pki(d)
        cls.p = staticmethod(p)
        with open(p("tokens"), "w") as f:
            f.write("%s py-trainer\n" % TOKEN)
        with open(p("token"), "w") as f:
            f.write(TOKEN + "\n")
        with open(p("wrong"), "w") as f:
            f.write("wrong-0123456789abcdef0123\n")
        cls.server = Nowcaster(extra=["--tls_cert=" + p("server.crt"), "--tls_key=" + p("server.key"),
                                      "--tls_client_ca=" + p("ca.crt"),
                                      "--auth_tokens_file=" + p("tokens")])

    @classmethod
    def tearDownClass(cls):
        cls.server.kill()

    jobs = 0

    def run_steps(self, **kw):
        model = MLP()
        SecurityTest.jobs += 1
        opt = make_opt(model, self.server.address, max_train_steps=40, timeout=5.0,
                       job_id="py-sec-%d" % SecurityTest.jobs, **kw)
        train(opt, model, data(), 40)
        opt.close()
        return opt.stats

    def test_mutual_tls_and_token_apply_nino_steps(self):
        p = self.p
        s = self.run_steps(tls_ca_file=p("ca.crt"), tls_cert_file=p("client.crt"),
                           tls_key_file=p("client.key"), auth_token_file=p("token"))
        self.assertEqual((s["nino_steps"], s["nino_applied"], s["nino_failures"]), (2, 2, 0), s)

    def test_missing_credentials_are_refused(self):
        p = self.p
        for name, kw in (("no token", dict(tls_ca_file=p("ca.crt"), tls_cert_file=p("client.crt"),
                                           tls_key_file=p("client.key"))),
                         ("wrong token", dict(tls_ca_file=p("ca.crt"),
                                              tls_cert_file=p("client.crt"),
                                              tls_key_file=p("client.key"),
                                              auth_token_file=p("wrong"))),
                         ("no client certificate", dict(tls_ca_file=p("ca.crt"),
                                                        auth_token_file=p("token"))),
                         ("plaintext", dict(auth_token_file=p("token")))):
            with self.subTest(name):
                s = self.run_steps(on_error="fallback", **kw)
                self.assertEqual(s["nino_applied"], 0, s)
        # A token the server refuses raises at construction with on_error="raise".
        with self.assertRaisesRegex(nino.NowcasterRefused, "PERMISSION_DENIED|UNAUTHENTICATED"):
            self.run_steps(tls_ca_file=p("ca.crt"), tls_cert_file=p("client.crt"),
                           tls_key_file=p("client.key"), auth_token_file=p("wrong"))

    def test_bad_files_fail_at_construction(self):
        p = self.p
        with self.assertRaisesRegex(ValueError, "tls_ca_file=.*missing"):
            self.run_steps(tls_ca_file=p("missing"))
        with self.assertRaisesRegex(ValueError, "both or neither"):
            self.run_steps(tls_ca_file=p("ca.crt"), tls_cert_file=p("client.crt"))
        with self.assertRaisesRegex(ValueError, "not a PEM"):
            self.run_steps(tls_ca_file=p("token"))


if __name__ == "__main__":
    unittest.main()
