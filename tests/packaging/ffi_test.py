#!/usr/bin/env python3
"""Uses libredtls.so from Python through ctypes, as a binding would.

Starts its own TLS-only, password-protected redis-server on a random
loopback port, builds a configuration through the typed setters, connects
with certificate verification, runs SET and GET with a binary value through
redtls_conn_command_argv and reads the replies through the redtls_reply_*
accessors. Exits non-zero on any failure.

Usage: ffi_test.py LIBREDTLS_SO SOURCE_DIR
Environment: REDTLS_GEN_CERTS overrides SOURCE_DIR/scripts/gen-certs.sh.
"""

import ctypes
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from ctypes import (POINTER, byref, c_char_p, c_int, c_longlong, c_size_t,
                    c_uint, c_uint16, c_void_p)

REDTLS_OK = 0
REDTLS_E_AUTH = 14
REDTLS_REPLY_STRING = 1
REDTLS_REPLY_STATUS = 5


def load(path):
    lib = ctypes.CDLL(path)
    sigs = {
        "redtls_version": (c_char_p, []),
        "redtls_version_number": (c_uint, []),
        "redtls_strerror": (c_char_p, [c_int]),
        "redtls_config_new": (c_int, [POINTER(c_void_p)]),
        "redtls_config_free": (None, [c_void_p]),
        "redtls_config_errmsg": (c_char_p, [c_void_p]),
        "redtls_config_set_host": (c_int, [c_void_p, c_char_p, c_uint16]),
        "redtls_config_set_ca_file": (c_int, [c_void_p, c_char_p]),
        "redtls_config_set_token": (c_int, [c_void_p, c_char_p]),
        "redtls_config_set_command_timeout_ms": (c_int, [c_void_p, c_uint]),
        "redtls_conn_new": (c_int, [c_void_p, POINTER(c_void_p)]),
        "redtls_conn_free": (None, [c_void_p]),
        "redtls_conn_connect": (c_int, [c_void_p]),
        "redtls_conn_is_connected": (c_int, [c_void_p]),
        "redtls_conn_errmsg": (c_char_p, [c_void_p]),
        "redtls_conn_tls_version": (c_char_p, [c_void_p]),
        "redtls_conn_command_argv": (c_int, [c_void_p, c_int, POINTER(c_char_p),
                                             POINTER(c_size_t), POINTER(c_void_p)]),
        "redtls_reply_free": (None, [c_void_p]),
        "redtls_reply_type": (c_int, [c_void_p]),
        # c_void_p, not c_char_p: the bytes may hold NULs.
        "redtls_reply_str": (c_void_p, [c_void_p, POINTER(c_size_t)]),
        "redtls_reply_integer": (c_longlong, [c_void_p]),
        "redtls_reply_len": (c_size_t, [c_void_p]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def start_server(workdir, certs, token):
    """Starts redis-server TLS-only on a random port; returns (proc, port)."""
    for _ in range(8):
        port = random.randint(20000, 29999)
        conf = os.path.join(workdir, "redis.conf")
        log = os.path.join(workdir, "redis.log")
        # A config file keeps the password off the process list.
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join([
                "port 0",
                f"tls-port {port}",
                f"tls-cert-file {certs}/server.crt",
                f"tls-key-file {certs}/server.key",
                f"tls-ca-cert-file {certs}/ca.crt",
                "tls-auth-clients optional",
                f"requirepass {token}",
                'save ""',
                "appendonly no",
                "bind 127.0.0.1",
                f"dir {workdir}",
                f"logfile {log}",
                "daemonize no",
                "",
            ]))
        open(log, "w").close()
        proc = subprocess.Popen(["redis-server", conf], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            with open(log) as f:
                if "Ready to accept connections" in f.read():
                    return proc, port
            time.sleep(0.05)
        stop_server(proc)
        with open(log) as f:
            sys.stderr.write(f"redis-server did not start on port {port}:\n{f.read()[-500:]}\n")
    raise Failure("could not start redis-server")


def stop_server(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def command(lib, conn, *args):
    """Runs one command; returns the reply pointer (caller frees)."""
    argv = (c_char_p * len(args))(*args)
    lens = (c_size_t * len(args))(*[len(a) for a in args])
    reply = c_void_p()
    st = lib.redtls_conn_command_argv(conn, len(args), argv, lens, byref(reply))
    if st != REDTLS_OK:
        raise Failure(f"{args[0].decode()}: {lib.redtls_strerror(st).decode()}: "
                      f"{lib.redtls_conn_errmsg(conn).decode()}")
    check(reply.value is not None, f"{args[0].decode()}: OK status but no reply")
    return reply


def reply_bytes(lib, reply):
    n = c_size_t(0)
    ptr = lib.redtls_reply_str(reply, byref(n))
    check(ptr is not None, "redtls_reply_str returned NULL")
    return ctypes.string_at(ptr, n.value)


def new_conn(lib, port, ca, token):
    """Config through setters -> connection handle. Returns (cfg, conn)."""
    cfg = c_void_p()
    check(lib.redtls_config_new(byref(cfg)) == REDTLS_OK and cfg.value, "redtls_config_new")
    for name, args in (("redtls_config_set_host", (b"localhost", port)),
                       ("redtls_config_set_ca_file", (ca.encode(),)),
                       ("redtls_config_set_token", (token.encode(),)),
                       ("redtls_config_set_command_timeout_ms", (3000,))):
        st = getattr(lib, name)(cfg, *args)
        if st != REDTLS_OK:
            raise Failure(f"{name}: {lib.redtls_strerror(st).decode()}: "
                          f"{lib.redtls_config_errmsg(cfg).decode()}")
    conn = c_void_p()
    st = lib.redtls_conn_new(cfg, byref(conn))
    if st != REDTLS_OK:
        lib.redtls_config_free(cfg)
        raise Failure(f"redtls_conn_new: {lib.redtls_strerror(st).decode()}")
    return cfg, conn


def run(lib, port, ca, token):
    version = lib.redtls_version().decode()
    print(f"libredtls {version} ({lib.redtls_version_number()})")

    cfg, conn = new_conn(lib, port, ca, token)
    replies = []
    try:
        st = lib.redtls_conn_connect(conn)
        if st != REDTLS_OK:
            raise Failure(f"connect: {lib.redtls_strerror(st).decode()}: "
                          f"{lib.redtls_conn_errmsg(conn).decode()}")
        check(lib.redtls_conn_is_connected(conn) == 1, "redtls_conn_is_connected after connect")
        tls = lib.redtls_conn_tls_version(conn)
        check(tls is not None and tls.startswith(b"TLS"), f"TLS version {tls!r}")

        key = b"redtls:ffi:" + secrets.token_hex(4).encode()
        value = b"bin\x00ary\xff\r\nvalue"
        replies.append(command(lib, conn, b"SET", key, value))
        check(lib.redtls_reply_type(replies[-1]) == REDTLS_REPLY_STATUS, "SET reply type is STATUS")
        check(reply_bytes(lib, replies[-1]) == b"OK", "SET reply is OK")

        replies.append(command(lib, conn, b"GET", key))
        check(lib.redtls_reply_type(replies[-1]) == REDTLS_REPLY_STRING, "GET reply type is STRING")
        got = reply_bytes(lib, replies[-1])
        check(got == value, f"GET returned {got!r}, expected {value!r}")

        replies.append(command(lib, conn, b"DEL", key))
        check(lib.redtls_reply_integer(replies[-1]) == 1, "DEL removed one key")
        print(f"SET/GET of a {len(value)}-byte binary value over {tls.decode()}: ok")
    finally:
        for r in replies:
            lib.redtls_reply_free(r)
        lib.redtls_conn_free(conn)
        lib.redtls_config_free(cfg)

    # A wrong token must fail with REDTLS_E_AUTH, and not be echoed back.
    wrong = "wrong-" + secrets.token_hex(8)
    cfg, conn = new_conn(lib, port, ca, wrong)
    try:
        st = lib.redtls_conn_connect(conn)
        msg = lib.redtls_conn_errmsg(conn).decode()
        check(st == REDTLS_E_AUTH, f"wrong token: status {st}, expected REDTLS_E_AUTH ({REDTLS_E_AUTH})")
        check(wrong not in msg, "the error message holds the token")
        print(f"wrong token: {lib.redtls_strerror(st).decode()}: {msg}")
    finally:
        lib.redtls_conn_free(conn)
        lib.redtls_config_free(cfg)
    # The free functions accept NULL.
    lib.redtls_conn_free(None)
    lib.redtls_config_free(None)
    lib.redtls_reply_free(None)


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    lib = load(sys.argv[1])
    gen_certs = os.environ.get("REDTLS_GEN_CERTS",
                               os.path.join(sys.argv[2], "scripts", "gen-certs.sh"))
    workdir = tempfile.mkdtemp(prefix="redtls-ffi.")
    proc = None
    try:
        certs = os.path.join(workdir, "certs")
        subprocess.run([gen_certs, certs], check=True, stdin=subprocess.DEVNULL)
        token = secrets.token_hex(24)
        proc, port = start_server(workdir, certs, token)
        print(f"redis-server pid {proc.pid} on 127.0.0.1:{port} (TLS only)")
        run(lib, port, os.path.join(certs, "ca.crt"), token)
    except Failure as e:
        print(f"ffi_python: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        if proc is not None:
            stop_server(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    print("ffi_python: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
