#!/usr/bin/env python3
"""Per-function instructions per operation from two callgrind profiles of
the same client, one with n operations and one with 2n: (Ir(2n) - Ir(n)) / n
for each function, self and inclusive, so start-up, connect and handshake
cancel out. Used by scripts/bench.sh (section async).

Usage: cgdiff.py PROFILE_N PROFILE_2N N [--top K] [--main BINARY] [--title T]
Reads the callgrind files directly: callgrind_annotate splits a function
into one row per source file its code came from (inlined header code) and
repeats inclusive rows, which would make a top list of duplicates."""
import argparse, os, re, sys


def profile(path):
    """Self and inclusive Ir per (object, function); calls of a function to
    itself are not added to its inclusive cost."""
    space = {"ob": "ob", "cob": "ob", "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl", "cfl": "fl",
             "fn": "fn", "cfn": "fn"}
    names = {"ob": {}, "fl": {}, "fn": {}}
    self_ir, calls_ir = {}, {}
    ob = fn = cob = cfn = None
    in_call = False
    for line in open(path):
        if line[0].isdigit() or line[0] in "+-*":
            parts = line.split()
            ir = int(parts[1]) if len(parts) > 1 else 0
            if in_call:
                if (cob or ob, cfn) != (ob, fn):
                    calls_ir[ob, fn] = calls_ir.get((ob, fn), 0) + ir
                in_call, cob = False, None
            else:
                self_ir[ob, fn] = self_ir.get((ob, fn), 0) + ir
            continue
        key, eq, val = line.rstrip("\n").partition("=")
        if eq and key in space:
            m = re.match(r"\((\d+)\)(?: (.*))?$", val)
            if m:
                table = names[space[key]]
                if m.group(2) is not None:
                    table[m.group(1)] = m.group(2)
                val = table[m.group(1)]
            if key == "ob":
                ob = val
            elif key == "fn":
                fn = val
            elif key == "cob":
                cob = val
            elif key == "cfn":
                cfn = val
        elif eq and key == "calls":
            in_call = True
    incl = {k: self_ir.get(k, 0) + calls_ir.get(k, 0) for k in set(self_ir) | set(calls_ir)}
    return self_ir, incl


def label(k):
    ob, fn = k
    if re.match(r"0x[0-9a-f]+$", fn):
        fn = "%#x" % int(fn, 16)
    return "%s  (%s)" % (fn, os.path.basename(ob or "?"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("p1")
    ap.add_argument("p2")
    ap.add_argument("n", type=int)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--main", default="redtls-bench")
    ap.add_argument("--title", default="")
    ap.add_argument("--sort", choices=("incl", "self"), default="incl")
    a = ap.parse_args()
    (self1, inc1), (self2, inc2) = profile(a.p1), profile(a.p2)
    keys = set(inc1) | set(inc2)
    incl = {k: (inc2.get(k, 0) - inc1.get(k, 0)) / a.n for k in keys}
    own = {k: (self2.get(k, 0) - self1.get(k, 0)) / a.n for k in keys}
    # The start-up frames above main cost what main costs; leave them out.
    mains = [k for k in keys if k[1] == "main" and os.path.basename(k[0] or "") == a.main]
    top = max((incl[k] for k in mains), default=float("inf"))
    shown = [k for k in keys if k in mains or incl[k] < top - 0.5]
    if a.title:
        print(a.title)
    print("%10s %10s  %s" % ("incl/op", "self/op", "function  (object)"))
    order = (lambda k: (-incl[k], label(k))) if a.sort == "incl" else (lambda k: (-own[k], label(k)))
    for k in sorted(shown, key=order)[:a.top]:
        print("%10s %10s  %s" % (format(round(incl[k]), ","), format(round(own[k]), ","), label(k)))


if __name__ == "__main__":
    sys.exit(main())
