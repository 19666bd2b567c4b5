#!/usr/bin/python3
"""Run the differential suite (test/fixtures/linux-af_key-suite/suite.json) against a real
Linux af_key in the reference VM (../shared/refkernel: build.sh once, then boot.sh) and
write Linux's answers: per step, send()'s result and every datagram each socket received.

    /usr/bin/python3 scripts/refkernel-capture.py            # writes test/fixtures/linux-af_key-suite/linux.json
    /usr/bin/python3 scripts/refkernel-capture.py --out /tmp/live.json

Steps carrying `capture` are not run: the relay only opens PF_KEY sockets and cannot send
a packet inside the VM, so the ACQUIRE scenario comes from the earlier capture it names
(its requests are checked to be the suite's). The same placeholder rules as
scripts/kame-diff.ts fill {{spi:STEP}} and {{policy:STEP}}.
"""
import argparse
import datetime
import hashlib
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "test", "fixtures", "linux-af_key-suite")
PLACEHOLDER = re.compile(r"\{\{(spi|policy):([A-Za-z0-9_]+)\}\}")
X_POLICY = 18


def find_ext(msg, ext_type):
    off = 16
    while off + 4 <= len(msg):
        n = int.from_bytes(msg[off:off + 2], "little") * 8
        if n == 0:
            return None
        if int.from_bytes(msg[off + 2:off + 4], "little") == ext_type:
            return msg[off:off + n]
        off += n
    return None


def fill(request, steps, results):
    """{{spi:S}} / {{policy:S}}: bytes 4-7 of the SA extension / 8-11 of X_POLICY in S's reply to its sender."""
    def sub(m):
        kind, name = m.group(1), m.group(2)
        step = next((s for s in steps if s["name"] == name), None)
        res = results.get(name)
        if step is None or res is None or "request" not in res:
            return "00000000"
        rtype = bytes.fromhex(res["request"][2:4])[0]
        for h in res["received"].get(str(step["socket"]), []):
            b = bytes.fromhex(h)
            if b[1] == rtype and b[2] == 0 and len(b) > 16:
                e = find_ext(b, 1 if kind == "spi" else X_POLICY)
                at = 4 if kind == "spi" else 8
                if e is not None and len(e) >= at + 4:
                    return e[at:at + 4].hex()
        return "00000000"
    return PLACEHOLDER.sub(sub, request)


def from_capture(step, cache):
    """A step's Linux answers from an earlier capture (socket letters mapped to the suite's ids)."""
    c = step["capture"]
    if c["file"] not in cache:
        with open(os.path.join(ROOT, c["file"])) as f:
            cache[c["file"]] = json.load(f)
    cap = cache[c["file"]]
    old = next(s for s in cap["steps"] if s["step"] == c["step"])
    res = {"name": step["name"], "received": {}, "source": "%s step %d (kernel %s)" % (c["file"], c["step"], cap["kernel"])}
    if "request" in step:
        if old.get("request") != step["request"]:
            sys.exit("%s: the suite's request is not the one %s step %d sent" % (step["name"], c["file"], c["step"]))
        res["request"] = step["request"]
        ok = old.get("send_errno", 0) == 0
        res["send"] = [len(step["request"]) // 2 if ok else -1, old.get("send_errno", 0)]
    for letter, msgs in old.get("received", {}).items():
        if msgs:
            res["received"][str(c["sockets"][letter])] = [m["hex"] for m in msgs]
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default=os.path.join(FIXTURES, "suite.json"))
    ap.add_argument("--out", default=os.path.join(FIXTURES, "linux.json"))
    ap.add_argument("--refkernel", default=os.path.join(ROOT, "..", "shared", "refkernel"), help="where rk.py is")
    ap.add_argument("--vm", default=os.environ.get("OUT", "/tmp/refkernel"), help="the VM's directory (relay.sock, root/)")
    args = ap.parse_args()

    with open(args.suite, "rb") as f:
        raw = f.read()
    suite = json.loads(raw)
    sys.path.insert(0, args.refkernel)
    import rk  # noqa: E402  (the relay client lives with the VM's scripts)

    kernel = "unknown"
    mods = os.path.join(args.vm, "root", "lib", "modules")
    if os.path.isdir(mods):
        kernel = sorted(os.listdir(mods))[0]
    k = rk.RefKernel(os.path.join(args.vm, "relay.sock"))
    # A clean slate: sockets a previous run left open, and whatever SAs and policies it left.
    for i in range(15):
        k.close(i)
    k.open(14)
    for req in ("02090000020000000000000000000000", "02130000020000000000000000000000"):  # FLUSH, X_SPDFLUSH
        k.send(14, bytes.fromhex(req))
    k.recv_all(14, 0.5)
    k.close(14)

    results, out, cache = {}, [], {}
    open_ids = set()
    default_settle = suite["settle"]

    def collect(seconds):
        got = {}
        ids = sorted(open_ids) or [14]
        first = True
        for i in ids:
            msgs = k.recv_all(i, seconds if first else 0)
            first = False
            if msgs and i in open_ids:
                got[str(i)] = [m.hex() for m in msgs]
        return got

    for step in suite["steps"]:
        name = step["name"]
        settle = step.get("settle", default_settle)
        if "capture" in step:
            res = from_capture(step, cache)
        elif "open" in step:
            for i in step["open"]:
                k.open(i)
                open_ids.add(i)
            res = {"name": name, "received": collect(0.1)}
        elif "close" in step:
            for i in step["close"]:
                k.close(i)
                open_ids.discard(i)
            res = {"name": name, "received": collect(0.1)}
        elif "request" in step:
            hexreq = fill(step["request"], suite["steps"], results)
            rc, err = k.send(step["socket"], bytes.fromhex(hexreq))
            res = {"name": name, "request": hexreq, "send": [rc, err], "received": collect(settle)}
        elif "wait" in step:
            res = {"name": name, "received": collect(step["wait"])}
        else:
            sys.exit("%s: a traffic step needs `capture` (the relay cannot send packets)" % name)
        results[name] = res
        out.append(res)
        sys.stderr.write("%-32s %s\n" % (name, ("send %s " % res["send"] if "send" in res else "") + " ".join("%s:%d" % (s, len(v)) for s, v in sorted(res["received"].items()))))

    doc = {
        "transport": "datagram",
        "kernel": "Linux %s" % kernel,
        "captured": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "how": "scripts/refkernel-capture.py: Debian's stock kernel in qemu (../shared/refkernel, relay.c over a serial line), "
               "af_key, esp4, ah4, ipcomp and the crypto modules loaded; steps with `source` come from the earlier capture named there",
        "suite_sha256": hashlib.sha256(raw).hexdigest(),
        "steps": out,
    }
    with open(args.out, "w") as f:
        f.write(json.dumps(doc, indent=1) + "\n")
    sys.stderr.write("wrote %s (%d steps, kernel %s)\n" % (args.out, len(out), kernel))


if __name__ == "__main__":
    main()
