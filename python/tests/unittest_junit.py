"""Runs one test module with unittest, verbosely, and writes a JUnit XML report to
$XML_OUTPUT_FILE (Bazel's test.xml, counted per test case by .ci/run). Exit status 1 on any
failure or error, also when the module ran no test at all."""

import importlib
import os
import sys
import time
import unittest
from xml.sax.saxutils import escape, quoteattr


class _Recorder(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cases = []  # (id, seconds, kind, text)
        self._t0 = {}

    def startTest(self, test):
        self._t0[test.id()] = time.monotonic()
        super().startTest(test)

    def _done(self, test, kind, text=""):
        self.cases.append((test.id(), time.monotonic() - self._t0.get(test.id(), time.monotonic()),
                           kind, text))

    def addSuccess(self, test):
        super().addSuccess(test)
        self._done(test, "pass")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._done(test, "failure", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._done(test, "error", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._done(test, "skipped", reason)


def main():
    name = sys.argv[1]
    module = importlib.import_module(name)
    suite = unittest.defaultTestLoader.loadTestsFromModule(module)
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=_Recorder)
    t0 = time.monotonic()
    result = runner.run(suite)
    total = time.monotonic() - t0
    fails = sum(1 for c in result.cases if c[2] == "failure")
    errors = sum(1 for c in result.cases if c[2] == "error")
    out = os.environ.get("XML_OUTPUT_FILE")
    if out:
        lines = ['<?xml version="1.0" encoding="UTF-8"?>',
                 '<testsuites tests="%d" failures="%d" errors="%d" disabled="0" time="%.3f">' %
                 (len(result.cases), fails, errors, total),
                 '<testsuite name=%s tests="%d" failures="%d" errors="%d" time="%.3f">' %
                 (quoteattr(name), len(result.cases), fails, errors, total)]
        for case_id, seconds, kind, text in result.cases:
            cls, _, meth = case_id.rpartition(".")
            attrs = 'name=%s classname=%s time="%.3f"' % (quoteattr(meth), quoteattr(cls), seconds)
            if kind == "pass":
                lines.append('<testcase %s result="completed"/>' % attrs)
            elif kind == "skipped":
                lines.append('<testcase %s result="skipped"><skipped message=%s/></testcase>' %
                             (attrs, quoteattr(text)))
            else:
                lines.append('<testcase %s result="completed"><%s message="%s">%s</%s></testcase>'
                             % (attrs, kind, kind, escape(text), kind))
        lines += ["</testsuite>", "</testsuites>"]
        with open(out, "w") as f:
            f.write("\n".join(lines) + "\n")
    if result.testsRun == 0:
        print("error: %s ran no test" % name, file=sys.stderr)
        return 1
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
