"""prometheus_check.py: a strict checker for the Prometheus text exposition
format 0.0.4, the format that levee's /metrics serves.

Integration tests import it:

    from prometheus_check import parse_prometheus, sample_value
    families = parse_prometheus(body)
    assert sample_value(families, "levee_requests_total", route="GET /x", class_="2xx") == 3

parse_prometheus reads the text line by line and raises PrometheusFormatError
(a ValueError) naming the line at the first mistake. It checks the things a
scraper trips over, or that hide a bug in the renderer:
  - every sample's family has # HELP and # TYPE before its first sample, each
    at most once, and a family's samples form one contiguous group;
  - metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
    [a-zA-Z_][a-zA-Z0-9_]* (not __reserved), with no duplicate label names and
    no duplicate series;
  - label values are double-quoted, with only the escapes backslash-backslash,
    backslash-quote and backslash-n, and HELP text only backslash-backslash
    and backslash-n;
  - values are floats as Go's ParseFloat writes them (NaN, +Inf, -Inf
    included; no Python-only forms such as 1_000), timestamps are integers;
  - counters are not negative;
  - histograms have only _bucket (with le), _sum and _count samples. Per label
    set, the buckets rise in le, their counts are cumulative, and the last is
    le="+Inf", equal to _count. _sum is present;
  - summaries: quantile labels in [0, 1], _sum and _count present.
When Debian's python3-prometheus-client is installed, the text is also parsed
with its text_string_to_metric_families, and the samples must agree.

The result maps each family name to
    {"type": "counter", "help": "...", "samples": [(name, {labels}, value), ...]}
with samples in the order they appeared.

Run it directly to run its self-test, or with a file name (or - for stdin) to
check a scrape: /usr/bin/python3 tests/integration/prometheus_check.py metrics.txt
"""

import math
import re
import sys

__all__ = ["PrometheusFormatError", "parse_prometheus", "sample_value"]

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Go's strconv.ParseFloat forms that the format allows, and no others.
FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?Inf|NaN")
TIMESTAMP = re.compile(r"-?[0-9]+")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
BLANKS = " \t"


class PrometheusFormatError(ValueError):
    """The text is not valid exposition format. lineno is 1-based (0: the
    text as a whole)."""

    def __init__(self, lineno, message, line=""):
        self.lineno = lineno
        where = "line %d: " % lineno if lineno else ""
        shown = " (%r)" % line[:200] if line else ""
        super().__init__(where + message + shown)


def _parse_float(text):
    if not FLOAT.fullmatch(text):
        return None
    if text.endswith("Inf"):
        return -math.inf if text.startswith("-") else math.inf
    return float(text)


class _Line:
    """A cursor over one line, for the sample grammar."""

    def __init__(self, text, lineno):
        self.text, self.pos, self.lineno = text, 0, lineno

    def fail(self, message):
        raise PrometheusFormatError(self.lineno, "%s at column %d" % (message, self.pos + 1), self.text)

    def skip_blanks(self):
        """Skips blanks; says whether there were any."""
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in BLANKS:
            self.pos += 1
        return self.pos > start

    def peek(self):
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char):
        if self.peek() != char:
            self.fail("expected %r" % char)
        self.pos += 1

    def match(self, pattern, what):
        m = pattern.match(self.text, self.pos)
        if not m:
            self.fail("expected " + what)
        self.pos = m.end()
        return m.group(0)

    def token(self):
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in BLANKS:
            self.pos += 1
        return self.text[start:self.pos]

    def label_value(self):
        self.expect('"')
        out = []
        while True:
            c = self.peek()
            if c == "":
                self.fail("unterminated label value")
            self.pos += 1
            if c == '"':
                return "".join(out)
            if c == "\\":
                esc = self.peek()
                if esc not in ("\\", '"', "n"):
                    self.pos -= 1
                    self.fail("invalid escape in label value (only \\\\, \\\" and \\n)")
                self.pos += 1
                out.append("\n" if esc == "n" else esc)
            else:
                out.append(c)


def _unescape_help(text, lineno, line):
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            esc = text[i + 1:i + 2]
            if esc not in ("\\", "n"):
                raise PrometheusFormatError(lineno, "invalid escape in HELP text (only \\\\ and \\n)", line)
            out.append("\n" if esc == "n" else "\\")
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _parse_sample(line, lineno):
    cur = _Line(line, lineno)
    name = cur.match(METRIC_NAME, "a metric name")
    labels = {}
    separated = cur.skip_blanks()
    if cur.peek() == "{":
        cur.pos += 1
        cur.skip_blanks()
        while cur.peek() != "}":
            lname = cur.match(LABEL_NAME, "a label name")
            if lname.startswith("__"):
                cur.fail("label name %r is reserved" % lname)
            if lname in labels:
                cur.fail("duplicate label name %r" % lname)
            cur.skip_blanks()
            cur.expect("=")
            cur.skip_blanks()
            labels[lname] = cur.label_value()
            cur.skip_blanks()
            if cur.peek() == ",":
                cur.pos += 1
                cur.skip_blanks()
            elif cur.peek() != "}":
                cur.fail("expected ',' or '}'")
        cur.pos += 1
        separated = cur.skip_blanks()
    if not separated or not cur.peek():
        cur.fail("expected a blank and a value")
    text = cur.token()
    value = _parse_float(text)
    if value is None:
        cur.fail("value %r is not a float" % text)
    cur.skip_blanks()
    if cur.peek():
        ts = cur.token()
        if not TIMESTAMP.fullmatch(ts):
            cur.fail("timestamp %r is not an integer" % ts)
        cur.skip_blanks()
        if cur.peek():
            cur.fail("unexpected text after the timestamp")
    return name, labels, value


def _family_of(name, families):
    """The declared family a sample name belongs to, or None."""
    if name in families:
        return name
    for suffix, types in (("_bucket", ("histogram",)), ("_sum", ("histogram", "summary")),
                          ("_count", ("histogram", "summary"))):
        base = name[:-len(suffix)]
        if name.endswith(suffix) and base in families and families[base]["type"] in types:
            return base
    return None


def _check_sample_kind(fam_name, fam, name, labels, value, lineno, line):
    kind = fam["type"]
    if kind == "counter" and not value >= 0 and not math.isnan(value):
        raise PrometheusFormatError(lineno, "counter %s is negative" % name, line)
    if kind == "histogram":
        if name == fam_name:
            raise PrometheusFormatError(lineno, "histogram %s has a sample without a suffix" % name, line)
        if name.endswith("_bucket"):
            if "le" not in labels:
                raise PrometheusFormatError(lineno, "histogram bucket without le", line)
            if _parse_float(labels["le"]) is None or math.isnan(_parse_float(labels["le"])):
                raise PrometheusFormatError(lineno, "le=%r is not a float" % labels["le"], line)
        elif "le" in labels:
            raise PrometheusFormatError(lineno, "le label on a histogram's %s" % name, line)
        if not name.endswith("_sum") and not value >= 0:
            raise PrometheusFormatError(lineno, "histogram %s is negative or NaN" % name, line)
    if kind == "summary" and name == fam_name:
        q = _parse_float(labels.get("quantile", ""))
        if q is None or not 0 <= q <= 1:
            raise PrometheusFormatError(lineno, "summary sample needs a quantile in [0, 1]", line)


def _check_histograms(fam_name, fam):
    groups = {}
    for name, labels, value in fam["samples"]:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        g = groups.setdefault(key, {"buckets": [], "sum": None, "count": None})
        if name.endswith("_bucket"):
            g["buckets"].append((_parse_float(labels["le"]), value))
        elif name.endswith("_sum"):
            g["sum"] = value
        else:
            g["count"] = value
    for key, g in groups.items():
        where = "%s{%s}" % (fam_name, ",".join('%s="%s"' % kv for kv in key))
        buckets = g["buckets"]
        if not buckets or buckets[-1][0] != math.inf:
            raise PrometheusFormatError(0, "%s: the last bucket must be le=\"+Inf\"" % where)
        for (le_a, n_a), (le_b, n_b) in zip(buckets, buckets[1:]):
            if not le_b > le_a:
                raise PrometheusFormatError(0, "%s: bucket bounds must rise (%r then %r)" % (where, le_a, le_b))
            if n_b < n_a:
                raise PrometheusFormatError(0, "%s: buckets are not cumulative (le=%r: %r, le=%r: %r)"
                                            % (where, le_a, n_a, le_b, n_b))
        if g["count"] is None or g["sum"] is None:
            raise PrometheusFormatError(0, "%s: _sum and _count are required" % where)
        if g["count"] != buckets[-1][1]:
            raise PrometheusFormatError(0, "%s: _count %r differs from the +Inf bucket %r"
                                        % (where, g["count"], buckets[-1][1]))


def _check_summaries(fam_name, fam):
    seen = {}
    for name, labels, _ in fam["samples"]:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "quantile"))
        seen.setdefault(key, set()).add(name[len(fam_name):])
    for key, suffixes in seen.items():
        if not {"_sum", "_count"} <= suffixes:
            raise PrometheusFormatError(0, "%s%r: _sum and _count are required" % (fam_name, key))


def _cross_check(text, families):
    """Parses text again with prometheus_client when it is installed; the
    samples must match ours. That library is lenient, so this catches
    differences in reading, not in strictness."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        return False

    def norm(name):
        # prometheus_client adds _total to counter samples that lack it.
        return name[:-len("_total")] if name.endswith("_total") else name

    def key(name, labels, value):
        return (norm(name), tuple(sorted(labels.items())), repr(float(value)))

    try:
        theirs = sorted(key(s.name, s.labels, s.value)
                        for fam in text_string_to_metric_families(text) for s in fam.samples)
    except Exception as e:  # its parser raises ValueError, IndexError...
        raise PrometheusFormatError(0, "prometheus_client cannot parse it: %r" % e) from None
    ours = sorted(key(n, lab, v) for fam in families.values() for n, lab, v in fam["samples"])
    if theirs != ours:
        diff = sorted(set(theirs) ^ set(ours))[:5]
        raise PrometheusFormatError(0, "prometheus_client reads the samples differently: %r" % diff)
    return True


def parse_prometheus(text, cross_check=True):
    """Validates text (str, or UTF-8 bytes) and returns its families (see the
    module comment). Raises PrometheusFormatError at the first problem."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise PrometheusFormatError(0, "not UTF-8: %s" % e) from None
    if text and not text.endswith("\n"):
        raise PrometheusFormatError(0, "the text must end with a newline")
    families = {}
    closed = set()   # families whose group of lines has ended
    current = None   # the family of the previous HELP/TYPE/sample line
    seen = set()     # (sample name, labels) already given
    for lineno, line in enumerate(text.split("\n")[:-1] if text else [], 1):
        if "\r" in line:
            raise PrometheusFormatError(lineno, "carriage return in a line", line)
        if not line.strip(BLANKS):
            continue
        if line.startswith("#"):
            parts = line[1:].lstrip(BLANKS).split(None, 2) if line[1:2] in BLANKS else []
            if len(parts) < 2 or parts[0] not in ("HELP", "TYPE"):
                continue  # an ordinary comment
            keyword, name = parts[0], parts[1]
            if not METRIC_NAME.fullmatch(name):
                raise PrometheusFormatError(lineno, "invalid metric name %r" % name, line)
            fam = families.get(name)
            if fam is None:
                if name in closed:
                    raise PrometheusFormatError(lineno, "family %s appears again after other families" % name,
                                                line)
                fam = families[name] = {"type": None, "help": None, "samples": []}
            elif fam["samples"]:
                raise PrometheusFormatError(lineno, "%s after the samples of %s" % (keyword, name), line)
            if current is not None and current != name:
                closed.add(current)
            if name in closed:
                raise PrometheusFormatError(lineno, "family %s appears again after other families" % name, line)
            current = name
            if keyword == "HELP":
                if fam["help"] is not None:
                    raise PrometheusFormatError(lineno, "second HELP for %s" % name, line)
                # As in Prometheus' own parser, the docstring starts at the
                # first non-blank after the name.
                rest = line[line.index(name, line.index("HELP") + 4) + len(name):]
                fam["help"] = _unescape_help(rest.lstrip(BLANKS), lineno, line)
            else:
                if fam["type"] is not None:
                    raise PrometheusFormatError(lineno, "second TYPE for %s" % name, line)
                if len(parts) != 3 or parts[2].strip(BLANKS) not in TYPES:
                    raise PrometheusFormatError(lineno, "TYPE must be one of " + ", ".join(TYPES), line)
                fam["type"] = parts[2].strip(BLANKS)
            continue
        name, labels, value = _parse_sample(line, lineno)
        fam_name = _family_of(name, families)
        if fam_name is None:
            raise PrometheusFormatError(lineno, "sample %s has no # HELP and # TYPE before it" % name, line)
        fam = families[fam_name]
        if fam["type"] is None or fam["help"] is None:
            raise PrometheusFormatError(lineno, "family %s needs both # HELP and # TYPE before its samples"
                                        % fam_name, line)
        if fam_name in closed or (current is not None and current != fam_name):
            raise PrometheusFormatError(lineno, "sample of %s outside that family's group of lines" % fam_name,
                                        line)
        current = fam_name
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            raise PrometheusFormatError(lineno, "duplicate series", line)
        seen.add(key)
        _check_sample_kind(fam_name, fam, name, labels, value, lineno, line)
        fam["samples"].append((name, labels, value))
    for fam_name, fam in families.items():
        if fam["type"] == "histogram":
            _check_histograms(fam_name, fam)
        elif fam["type"] == "summary":
            _check_summaries(fam_name, fam)
    if cross_check:
        _cross_check(text, families)
    return families


def sample_value(families, name, **labels):
    """The value of sample `name` with exactly these labels, or None. A
    trailing underscore in a keyword is dropped, so class_="2xx" matches the
    label class."""
    want = {k[:-1] if k.endswith("_") else k: v for k, v in labels.items()}
    fam = families.get(_family_of(name, families) or name)
    for sname, slabels, value in (fam["samples"] if fam else []):
        if sname == name and slabels == want:
            return value
    return None


# ---- Self-test ----

_GOOD = r'''# HELP levee_requests_total Requests answered, by route and status class.
# TYPE levee_requests_total counter
levee_requests_total{route="GET /x",class="2xx"} 5
levee_requests_total{route="GET \"q\" \\ \n",class="5xx"} 1
# A comment that is neither HELP nor TYPE.

# HELP levee_connections Open connections.\nOne per loop \\ summed.
# TYPE levee_connections gauge
levee_connections -2
# HELP levee_cache_bytes
# TYPE levee_cache_bytes gauge
levee_cache_bytes{shard="0"} NaN
levee_cache_bytes{shard="1"} +Inf
levee_cache_bytes{shard="2"} 1.5e+03 1700000000000
# HELP levee_request_seconds Request latency.
# TYPE levee_request_seconds histogram
levee_request_seconds_bucket{route="GET /x",le="5e-05"} 0
levee_request_seconds_bucket{route="GET /x",le="0.001"} 2
levee_request_seconds_bucket{route="GET /x",le="1"} 4
levee_request_seconds_bucket{route="GET /x",le="+Inf"} 5
levee_request_seconds_sum{route="GET /x"} 2.252500001
levee_request_seconds_count{route="GET /x"} 5
levee_request_seconds_bucket{ route = "GET /y" , le="+Inf", } 0
levee_request_seconds_sum{route="GET /y"} 0
levee_request_seconds_count{route="GET /y"} 0
# HELP rpc_seconds A summary.
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} 0.1
rpc_seconds{quantile="0.99"} 0.3
rpc_seconds_sum 12.5
rpc_seconds_count 100
# HELP other Untyped.
# TYPE other untyped
other 1
'''

_HEAD = "# HELP m m\n# TYPE m counter\n"
_HIST = "# HELP h h\n# TYPE h histogram\n"
_BAD = {
    "no HELP/TYPE": "m 1\n",
    "TYPE only": "# TYPE m counter\nm 1\n",
    "HELP only": "# HELP m m\nm 1\n",
    "TYPE after samples": "# HELP m m\nm 1\n# TYPE m counter\n",
    "second TYPE": _HEAD + "# TYPE m counter\nm 1\n",
    "unknown type": "# HELP m m\n# TYPE m countr\nm 1\n",
    "bad metric name": _HEAD + "m-x 1\n",
    "name starts with digit": "# HELP 1m m\n# TYPE 1m counter\n1m 1\n",
    "bad label name": _HEAD + 'm{1a="x"} 1\n',
    "reserved label": _HEAD + 'm{__a="x"} 1\n',
    "unquoted label": _HEAD + "m{a=x} 1\n",
    "bad escape": _HEAD + 'm{a="\\t"} 1\n',
    "unterminated": _HEAD + 'm{a="x} 1\n',
    "duplicate label": _HEAD + 'm{a="x",a="y"} 1\n',
    "missing comma": _HEAD + 'm{a="x" b="y"} 1\n',
    "duplicate series": _HEAD + 'm{a="x"} 1\nm{a="x"} 2\n',
    "value not float": _HEAD + "m one\n",
    "python-only float": _HEAD + "m 1_000\n",
    "lower-case inf": _HEAD + "m inf\n",
    "no value": _HEAD + "m\n",
    "bad timestamp": _HEAD + "m 1 1.5\n",
    "trailing text": _HEAD + "m 1 2 3\n",
    "negative counter": _HEAD + "m -1\n",
    "no final newline": _HEAD + "m 1",
    "carriage return": _HEAD + "m 1\r\n",
    "bad HELP escape": "# HELP m a\\tb\n# TYPE m counter\nm 1\n",
    "split family": _HEAD + "m 1\n# HELP n n\n# TYPE n gauge\nn 1\n" + 'm{a="b"} 1\n',
    "family again": _HEAD + "m 1\n# HELP n n\n# TYPE n gauge\nn 1\n# HELP m m\n",
    "TYPE after another family": "# HELP m m\n# HELP n n\n# TYPE n gauge\n# TYPE m counter\nm 1\n",
    "bucket without le": _HIST + 'h_bucket 1\nh_sum 0\nh_count 1\n',
    "le not float": _HIST + 'h_bucket{le="x"} 1\nh_bucket{le="+Inf"} 1\nh_sum 0\nh_count 1\n',
    "no +Inf": _HIST + 'h_bucket{le="1"} 1\nh_sum 0\nh_count 1\n',
    "not cumulative": _HIST + 'h_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 0\nh_count 1\n',
    "le not rising": _HIST + 'h_bucket{le="2"} 0\nh_bucket{le="1"} 0\nh_bucket{le="+Inf"} 0\nh_sum 0\nh_count 0\n',
    "count != +Inf": _HIST + 'h_bucket{le="+Inf"} 2\nh_sum 0\nh_count 3\n',
    "no _sum": _HIST + 'h_bucket{le="+Inf"} 2\nh_count 2\n',
    "no _count": _HIST + 'h_bucket{le="+Inf"} 2\nh_sum 1\n',
    "bare histogram sample": _HIST + "h 1\n",
    "le on _sum": _HIST + 'h_bucket{le="+Inf"} 0\nh_sum{le="1"} 0\nh_count 0\n',
    "summary without quantile": "# HELP s s\n# TYPE s summary\ns 1\ns_sum 1\ns_count 1\n",
    "not UTF-8": b"# HELP m \xff\n# TYPE m counter\nm 1\n",
}


def _self_test():
    passed = failed = 0

    def check(ok, what):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print("not ok:", what, file=sys.stderr)

    fams = parse_prometheus(_GOOD)
    check(list(fams) == ["levee_requests_total", "levee_connections", "levee_cache_bytes",
                         "levee_request_seconds", "rpc_seconds", "other"], "family order")
    check(fams["levee_connections"]["help"] == "Open connections.\nOne per loop \\ summed.", "HELP unescaped")
    check(fams["levee_cache_bytes"]["help"] == "", "empty HELP")
    check(sample_value(fams, "levee_requests_total", route="GET /x", class_="2xx") == 5, "counter value")
    check(sample_value(fams, "levee_requests_total", route='GET "q" \\ \n', class_="5xx") == 1, "escaped labels")
    check(sample_value(fams, "levee_connections") == -2, "gauge value")
    check(math.isnan(sample_value(fams, "levee_cache_bytes", shard="0")), "NaN")
    check(sample_value(fams, "levee_cache_bytes", shard="1") == math.inf, "+Inf")
    check(sample_value(fams, "levee_cache_bytes", shard="2") == 1500, "exponent and timestamp")
    check(sample_value(fams, "levee_request_seconds_count", route="GET /x") == 5, "histogram _count")
    check(sample_value(fams, "levee_request_seconds_bucket", route="GET /y", le="+Inf") == 0, "blanks in labels")
    check(sample_value(fams, "levee_requests_total", route="nope") is None, "missing sample")
    check(parse_prometheus("") == {}, "empty text")
    for what, text in _BAD.items():
        try:
            parse_prometheus(text)
        except PrometheusFormatError:
            check(True, what)
        else:
            check(False, "accepted bad text: " + what)
    try:
        import prometheus_client  # noqa: F401
        print("prometheus_client cross-check: on")
    except ImportError:
        print("prometheus_client cross-check: off (apt-get install python3-prometheus-client)")
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def _main(argv):
    if len(argv) < 2:
        return _self_test()
    data = sys.stdin.buffer.read() if argv[1] == "-" else open(argv[1], "rb").read()
    try:
        fams = parse_prometheus(data)
    except PrometheusFormatError as e:
        print("invalid: %s" % e, file=sys.stderr)
        return 1
    print("ok: %d families, %d samples" % (len(fams), sum(len(f["samples"]) for f in fams.values())))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
