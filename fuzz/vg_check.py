"""Reads valgrind memcheck logs (make valgrind) and fails when our code is
involved in any error or definitely-lost block.

A record is ours when one of its stack frames is in ipvs/_libipvs*.so or in
one of the csrc/*.c files. Everything else is reported as interpreter noise
(counted, not fatal). Usage: python fuzz/vg_check.py vg.*.log
"""
import re
import sys

OURS = re.compile(r"_libipvs|\b(libipvs|netlink|sockopt|nlparse|soparse|alloc)\.c\b")
HEAD = re.compile(r"^==\d+== ?(.*)$")


def records(path):
    rec = []
    with open(path, errors="replace") as f:
        for line in f:
            m = HEAD.match(line.rstrip("\n"))
            if m is None or not m.group(1).strip():
                if rec:
                    yield rec
                    rec = []
                continue
            rec.append(m.group(1))
    if rec:
        yield rec


def main(paths):
    ours_err = ours_lost = noise = 0
    summaries = []
    for p in paths:
        for rec in records(p):
            first = rec[0]
            summ = [l.strip() for l in rec if l.strip().startswith(
                ("ERROR SUMMARY", "definitely lost:", "indirectly lost:"))]
            if summ:
                summaries.extend("%s: %s" % (p, l) for l in summ)
                continue
            is_lost = "definitely lost" in first and "loss record" in first
            is_err = first.startswith(("Invalid ", "Conditional jump", "Use of uninitialised",
                                       "Syscall param", "Mismatched free", "Source and destination"))
            if not (is_lost or is_err):
                continue
            if any(OURS.search(l) for l in rec):
                print("\n".join([p + ":"] + rec) + "\n")
                if is_lost:
                    ours_lost += 1
                else:
                    ours_err += 1
            else:
                noise += 1
    for s in summaries:
        print(s)
    print("vg_check: %d log(s); ours: %d error(s), %d definitely-lost record(s); "
          "interpreter records ignored: %d" % (len(paths), ours_err, ours_lost, noise))
    if not paths:
        print("vg_check: no valgrind log found")
        return 1
    return 1 if ours_err or ours_lost else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
