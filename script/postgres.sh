# Sourced by script/test and benches/run.sh: makes a PostgreSQL server reachable at
# $CXREPORT_TEST_POSTGRES. When none is reachable there and the server binaries are
# installed, a throwaway server is started on loopback and a free port, in a temporary
# folder (as the `postgres` user when run as root: initdb refuses root), and stopped
# when the calling script exits. Needs `say` (a message function) from the caller.
# With the openssl CLI the throwaway server also speaks TLS (a certificate for
# `localhost` signed by a CA made here, exported as CXREPORT_TEST_POSTGRES_CA), and
# its pg_hba.conf has two roles for the TLS tests (tests/postgres.rs creates them):
# `cxreport_tls_only` is refused without TLS, `cxreport_cleartext` is asked for
# its password in clear.
pg_dir=""
stop_pg() {
    if [ -n "$pg_dir" ]; then
        pg_run "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$pg_dir"
    fi
}
trap stop_pg EXIT
pg_run() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}
pg_reachable() {
    [ -n "${CXREPORT_TEST_POSTGRES:-}" ] && command -v psql >/dev/null 2>&1 &&
        psql "$CXREPORT_TEST_POSTGRES" -Atqc 'select 1' >/dev/null 2>&1
}
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
make_certs() {
    local d=$1 ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${ec[@]}" -days 2 -subj "/CN=cxreport test CA" \
        -keyout "$d/ca.key" -out "$d/ca.crt" >/dev/null 2>&1 || return 1
    openssl req "${ec[@]}" -subj "/CN=localhost" \
        -keyout "$d/server.key" -out "$d/server.csr" >/dev/null 2>&1 || return 1
    printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >"$d/server.ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
        -CAcreateserial -days 2 -out "$d/server.crt" -extfile "$d/server.ext" >/dev/null 2>&1 || return 1
    chmod 600 "$d/server.key"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$d/server.key" "$d/server.crt" || return 1; fi
}
start_pg() {
    pg_dir=$(mktemp -d /tmp/cxreport-pg.XXXXXX) || return 1
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$pg_dir" || return 1; fi
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])') || return 1
    pg_run "$pg_bin/initdb" -D "$pg_dir/data" -U postgres -A trust >"$pg_dir/initdb.log" 2>&1 || return 1
    local ssl=""
    if command -v openssl >/dev/null 2>&1 && make_certs "$pg_dir"; then
        ssl="-c ssl=on -c ssl_cert_file=$pg_dir/server.crt -c ssl_key_file=$pg_dir/server.key"
        local hba="$pg_dir/data/pg_hba.conf"
        { printf 'hostnossl all cxreport_tls_only 127.0.0.1/32 reject\n'
          printf 'host all cxreport_cleartext 127.0.0.1/32 password\n'
          cat "$hba"; } >"$pg_dir/hba.new" && cat "$pg_dir/hba.new" >"$hba" || return 1
        export CXREPORT_TEST_POSTGRES_CA="$pg_dir/ca.crt"
    else
        say "no openssl: the throwaway PostgreSQL has no TLS (the TLS tests will say so)"
    fi
    pg_run "$pg_bin/pg_ctl" -D "$pg_dir/data" -w -l "$pg_dir/log" \
        -o "-h 127.0.0.1 -p $port -k $pg_dir -c fsync=off $ssl" start >/dev/null || return 1
    export CXREPORT_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$port/postgres"
}
if pg_reachable; then
    say "using PostgreSQL at $CXREPORT_TEST_POSTGRES"
elif [ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] &&
    { [ "$(id -u)" -ne 0 ] || id postgres >/dev/null 2>&1; }; then
    if start_pg; then
        say "started a throwaway PostgreSQL at $CXREPORT_TEST_POSTGRES"
    else
        say "could not start a throwaway PostgreSQL (see ${pg_dir:-its folder}); tests that need one will say so"
    fi
else
    say "no PostgreSQL server binaries; install them with: sudo apt-get install postgresql"
fi

