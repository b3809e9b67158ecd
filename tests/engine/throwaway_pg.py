"""A throwaway PostgreSQL 15 for the engine's Aurora stand-in, from Python (`make test-ansible`).

The same kind of cluster as tests/harness/postgres.rs starts for the Rust tests: scram-sha-256 on
every pg_hba line, TLS with a server certificate for DNS:localhost from a test CA made here, a
free loopback port, run as the `postgres` user when we are root. `start(dir)` returns the
ENGINE_PG_* environment for cfn_engine.py and the process; `stop(proc, dir)` ends it.
"""

import os
import pwd
import secrets
import socket
import subprocess
import time
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def start(directory):
    directory = Path(directory)
    certs = directory / "certs"
    certs.mkdir(parents=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=engine test CA",
             "-keyout", "ca.key", "-out", "ca.crt", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=certs)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
             "-out", "server.csr", cwd=certs)
    (certs / "ext").write_text("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n"
                               "extendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "ext", "-out", "server.crt", cwd=certs)
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    password = secrets.token_hex(16)
    pwfile = directory / "pwfile"
    pwfile.write_text(password)
    os.chmod(certs / "server.key", 0o600)
    if as_root:
        user = pwd.getpwnam("postgres")
        for path in (directory, certs, certs / "server.key", certs / "server.crt", pwfile):
            os.chown(path, user.pw_uid, user.pw_gid)
    data = directory / "data"
    subprocess.run([*run_as, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
                    "-E", "UTF8", "--locale=C", "--no-sync", f"--pwfile={pwfile}"],
                   cwd=directory, check=True, capture_output=True)
    pwfile.unlink()
    port = _free_port()
    with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{directory}'\n"
                   f"ssl = on\nssl_cert_file = '{certs}/server.crt'\nssl_key_file = '{certs}/server.key'\n"
                   "password_encryption = 'scram-sha-256'\nfsync = off\nsynchronous_commit = off\n")
    (data / "pg_hba.conf").write_text("local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n")
    log = open(directory / "postgres.log", "wb")  # noqa: SIM115 (the server's log for its life)
    proc = subprocess.Popen([*run_as, str(PG_BIN / "postgres"), "-D", str(data)], cwd=directory,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    env = {"ENGINE_PG_HOST": "localhost", "ENGINE_PG_ADDRESS": "127.0.0.1", "ENGINE_PG_PORT": str(port),
           "ENGINE_PG_USER": "postgres", "ENGINE_PG_PASSWORD": password,
           "ENGINE_PG_CA_FILE": str(certs / "ca.crt")}
    return env, proc


def stop(proc, directory):
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    subprocess.run([*run_as, str(PG_BIN / "pg_ctl"), "-D", str(Path(directory) / "data"), "-m", "immediate",
                    "-w", "stop"], capture_output=True, check=False)
    proc.wait(timeout=30)
