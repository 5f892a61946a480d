#!/usr/bin/python3
"""Capture Debian ipvsadm's output for the golden fixtures.

Run inside a User-Mode Linux kernel with IPVS (see tests/unit/golden/README.md);
it writes the *.txt and errors.json files next to itself.  Nothing here is used
by the tests at run time: the files it writes are observations of ipvsadm.
"""
import json, os, shlex, socket, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else HERE


def sh(cmd):
    subprocess.run(cmd, shell=True, check=False)


def run(args, stdin=None):
    p = subprocess.run(["ipvsadm"] + args, input=(stdin or "").encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def save(name, args):
    rc, out, err = run(args)
    assert rc == 0 and not err, (args, rc, err)
    with open(os.path.join(OUT, name), "w") as f:
        f.write(out)


def traffic():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(1600):                      # > 100,000,000 bytes: "K" column
        s.sendto(b"x" * 65000, ("10.9.9.9", 53))
    for i in range(3):
        s.sendto(b"y" * 100, ("10.0.0.2", 53))  # persistent: template + UDP entries
    socks = []
    for addr, fam in (("10.0.0.1", socket.AF_INET), ("2001:db8::80", socket.AF_INET6)):
        t = socket.socket(fam, socket.SOCK_STREAM)
        t.setblocking(False)
        try:
            t.connect((addr, 80))
        except BlockingIOError:
            pass
        socks.append(t)
    return socks


def main():
    sh("sh -e %s/state.sh" % HERE)
    # the kernel refuses sync daemons while a destination's family differs from
    # its service's: capture the daemons before the mixed-family destinations
    sh("ipvsadm --start-daemon master --mcast-interface dummy0 --syncid 7 --sync-maxlen 1200"
       " --mcast-group 224.0.0.82 --mcast-port 8849 --mcast-ttl 3")
    sh("ipvsadm --start-daemon backup --mcast-interface dummy0 --syncid 9")
    save("daemon.txt", ["-L", "--daemon"])
    save("daemon_n.txt", ["-Ln", "--daemon"])
    sh("ipvsadm --stop-daemon master; ipvsadm --stop-daemon backup")
    sh("sh -e %s/state_mixed.sh" % HERE)
    keep = traffic()
    time.sleep(4.5)
    # rates move every 2 s: take the rate listings back to back, retry if torn
    for _ in range(5):
        save("Ln_rate.txt", ["-Ln", "--rate"])
        save("Ln_rate_exact.txt", ["-Ln", "--rate", "--exact"])
        a = open(os.path.join(OUT, "Ln_rate.txt")).read()
        b = open(os.path.join(OUT, "Ln_rate_exact.txt")).read()
        if a.replace(" ", "") .count("\n") == b.count("\n"):
            break
    for name, args in [
        ("Ln.txt", ["-Ln"]),
        ("L.txt", ["-L"]),
        ("Ln_stats.txt", ["-Ln", "--stats"]),
        ("Ln_stats_exact.txt", ["-Ln", "--stats", "--exact"]),
        ("Ln_exact.txt", ["-Ln", "--exact"]),
        ("Ln_thresholds.txt", ["-Ln", "--thresholds"]),
        ("Ln_persistent_conn.txt", ["-Ln", "--persistent-conn"]),
        ("Ln_tun_info.txt", ["-Ln", "--tun-info"]),
        ("Ln_nosort.txt", ["-Ln", "--nosort"]),
        ("Sn.txt", ["-Sn"]),
        ("S.txt", ["-S"]),
        ("timeout.txt", ["-L", "--timeout"]),
        ("Lcn.txt", ["-Lcn"]),
        ("Lcn_persistent_conn.txt", ["-Lcn", "--persistent-conn"]),
        ("Lc.txt", ["-Lc"]),
        ("Ln_t_service.txt", ["-Ln", "-t", "10.0.0.1:80"]),
        ("Ln_t_service_stats.txt", ["-Ln", "-t", "10.0.0.1:80", "--stats"]),
        ("Ln_t_service_thresholds.txt", ["-Ln", "-t", "10.0.0.1:80", "--thresholds"]),
        ("Ln_u_service_v6.txt", ["-Ln", "-u", "[2001:db8::53]:53"]),
        ("Ln_f_service.txt", ["-Ln", "-f", "8", "-6"]),
        ("L_t_service.txt", ["-L", "-t", "10.0.0.1:http"]),
        ("help.txt", ["-h"]),
        ("version.txt", ["--version"]),
    ]:
        save(name, args)
    cases = []
    for line in open(os.path.join(HERE, "error_cases.txt")):
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        stdin = None
        if " <<< " in line:
            line, stdin = line.split(" <<< ", 1)
            stdin = stdin.encode().decode("unicode_escape")
        if line.startswith("!"):          # a setup command, not recorded
            sh(line[1:])
            continue
        args = shlex.split(line)
        rc, out, err = run(args, stdin)
        cases.append({"args": args, "stdin": stdin, "rc": rc, "stdout": out, "stderr": err})
    with open(os.path.join(OUT, "errors.json"), "w") as f:
        json.dump(cases, f, indent=1)
        f.write("\n")
    save("Sn_after_errors.txt", ["-Sn"])


main()
