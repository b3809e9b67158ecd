//! A throwaway PostgreSQL 15 cluster for the tests, started once per test process on first use
//! ([`postgres`]) and stopped by [`crate::services::shutdown`].
//!
//! It is real where it matters: password authentication with `scram-sha-256` on every line of
//! `pg_hba.conf` (never `trust`), TLS on with a server certificate from a test CA made at run
//! time with `openssl` (its only name is `DNS:localhost`, so connecting to `127.0.0.1` with
//! `verify-full` fails on the host name), `log_statement = 'all'` into a log file the tests read,
//! and an admin user like an RDS master: `LOGIN CREATEDB CREATEROLE`, not a superuser. It listens
//! on a free loopback port only, and never touches a PostgreSQL the machine may already run.
//!
//! `initdb` and `postgres` come from `/usr/lib/postgresql/15/bin` (`make deps` installs them);
//! they refuse to run as root, so as root they run as the `postgres` user (`runuser`) in a
//! directory that user owns.
//!
//! `DATABASE_URL` given from outside is used instead: `postgres://USER:PASSWORD@HOST:PORT/DB`
//! naming a user that is a superuser or, like an RDS master, has `CREATEDB` and `CREATEROLE`
//! (it becomes the admin user the Lambda uses), on a server that accepts TLS. Its CA certificate
//! (PEM) must be in the file named by `DATABASE_CA_FILE`, and the server certificate must name
//! HOST but not HOST's IP address. There is no server log then ([`Postgres::log`] is `None`),
//! and the checks that search it say they are skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::services::{at_shutdown, free_port, own_child, scratch_dir, wait_for_port};
use crate::tls::{make_ca, make_server_cert};

/// Where Debian keeps the PostgreSQL 15 server binaries.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The database every cluster has, for cluster-wide statements.
pub const ADMIN_DATABASE: &str = "postgres";

/// The throwaway cluster (or the one `DATABASE_URL` names).
#[derive(Debug)]
pub struct Postgres {
    /// The host name the server certificate names: use it as `ClusterEndpoint`.
    pub host: String,
    /// The same server by IP address, which the certificate does not name.
    pub address: String,
    pub port: u16,
    /// An RDS-master-like user: `LOGIN CREATEDB CREATEROLE`, no superuser.
    pub admin_user: String,
    pub admin_password: String,
    /// The CA that signed the server certificate (PEM), for `CaCertificate`.
    pub ca_pem: String,
    /// An unrelated CA (PEM) that signed nothing this server shows.
    pub other_ca_pem: String,
    /// The server log (`log_statement = 'all'`); `None` for a `DATABASE_URL` server.
    pub log_file: Option<ServerLog>,
    /// The bootstrap superuser (user, password) of a throwaway cluster, for the few tests that
    /// need what an RDS master cannot do (make a superuser); `None` for a `DATABASE_URL` server.
    pub superuser: Option<(String, String)>,
}

/// The log file of a throwaway cluster, and the proof that it is that server's log.
#[derive(Debug, Clone)]
pub struct ServerLog {
    pub path: PathBuf,
    /// A harmless statement with a random tag, run (and so logged) once the server was up: a file
    /// without it is not this server's log, however empty or clean it reads.
    pub marker: String,
}

impl ServerLog {
    /// Everything the server logged so far; an error when the file cannot be read or lacks the
    /// marker, so that a search of it for secrets cannot pass on an empty or wrong file.
    pub fn read(&self) -> Result<String, String> {
        let bytes = std::fs::read(&self.path)
            .map_err(|e| format!("cannot read the server log {}: {e}", self.path.display()))?;
        let log = String::from_utf8_lossy(&bytes).into_owned();
        if !log.contains(&self.marker) {
            return Err(format!(
                "{} is not this server's log: the statement {:?} is not in it",
                self.path.display(),
                self.marker
            ));
        }
        Ok(log)
    }
}

/// The shared cluster, started on first use.
pub fn postgres() -> &'static Postgres {
    static POSTGRES: OnceLock<Postgres> = OnceLock::new();
    POSTGRES.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => external(&url),
        _ => start(),
    })
}

impl Postgres {
    /// Connects as `user` to `database` over TLS, verifying the server certificate against the
    /// test CA and the host name ([`Postgres::host`]).
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        database: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(database)
            .ssl_mode(tokio_postgres::config::SslMode::Require)
            .connect_timeout(Duration::from_secs(10));
        if let Ok(address) = self.address.parse() {
            config.hostaddr(address);
        }
        let (client, connection) = config.connect(tls(&self.ca_pem)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// The admin's session on `database`; panics when it cannot connect.
    pub async fn admin(&self, database: &str) -> tokio_postgres::Client {
        self.connect(&self.admin_user, &self.admin_password, database)
            .await
            .unwrap_or_else(|e| panic!("admin cannot connect to {database}: {e:?}"))
    }

    /// Everything the server logged so far; `None` only for a `DATABASE_URL` server, whose log
    /// is not ours to read. Panics when the log of a throwaway cluster cannot be read or is not
    /// its log ([`ServerLog::read`]).
    pub fn log(&self) -> Option<String> {
        self.log_file
            .as_ref()
            .map(|log| log.read().unwrap_or_else(|why| panic!("{why}")))
    }
}

/// A rustls connector (ring) that trusts only `ca_pem` and checks the host name.
pub fn tls(ca_pem: &str) -> tokio_postgres_rustls::MakeRustlsConnect {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

/// Hex of `n` random bytes from the OS.
pub fn random_hex(n: usize) -> String {
    use std::io::Read;
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn external(url: &str) -> Postgres {
    let config = tokio_postgres::Config::from_str(url).expect("DATABASE_URL is not a postgres:// URL");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => panic!("DATABASE_URL must name a TCP host"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let address = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .ok()
        .and_then(|mut a| a.next())
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| host.clone());
    let ca_file = std::env::var("DATABASE_CA_FILE")
        .expect("DATABASE_URL needs DATABASE_CA_FILE: the PEM CA of its server certificate");
    let dir = scratch_dir().join("postgres");
    std::fs::create_dir_all(&dir).expect("postgres scratch dir");
    let other = make_ca(&dir, "other-ca", "local-invoke unrelated CA");
    Postgres {
        host,
        address,
        port,
        admin_user: config.get_user().expect("DATABASE_URL needs a user").to_string(),
        admin_password: String::from_utf8(
            config
                .get_password()
                .expect("DATABASE_URL needs a password")
                .to_vec(),
        )
        .expect("UTF-8 password"),
        ca_pem: std::fs::read_to_string(&ca_file).expect("read DATABASE_CA_FILE"),
        other_ca_pem: std::fs::read_to_string(other.0).expect("other CA"),
        log_file: None,
        superuser: None,
    }
}

/// The `postgres` user's uid and gid, when this process runs as root.
fn run_as() -> Option<(u32, u32)> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("running as root, and there is no postgres user to run the cluster as: run `make deps`");
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields[2].parse().expect("uid"), fields[3].parse().expect("gid")))
}

/// A command that runs `program` as the `postgres` user when we are root.
fn command(program: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn chown(path: &Path, ids: Option<(u32, u32)>) {
    if let Some((uid, gid)) = ids {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn start() -> Postgres {
    let bin = Path::new(PG_BIN);
    assert!(
        bin.join("initdb").is_file() && bin.join("postgres").is_file(),
        "{PG_BIN}/initdb is missing: the PostgreSQL 15 server is not installed; run `make deps`"
    );
    let ids = run_as();
    let dir = scratch_dir().join("postgres");
    std::fs::create_dir_all(&dir).expect("postgres scratch dir");
    chown(&dir, ids);
    chmod(&dir, 0o755);

    let (certs, ca_crt, other_crt) = make_certs(&dir, ids);
    let superuser_password = random_hex(16);
    let data = init_data_dir(bin, &dir, ids, &superuser_password);
    let port = free_port();
    configure(&data, &dir, &certs, port);
    let log_file = start_server(bin, &data, &dir, ids, port);

    let ca_pem = std::fs::read_to_string(&ca_crt).expect("ca.crt");
    let mut cluster = Postgres {
        host: "localhost".into(),
        address: "127.0.0.1".into(),
        port,
        admin_user: "postgres".into(),
        admin_password: superuser_password.clone(),
        ca_pem,
        other_ca_pem: std::fs::read_to_string(&other_crt).expect("other-ca.crt"),
        log_file: Some(ServerLog {
            path: log_file,
            marker: format!("local-invoke server log {}", random_hex(8)),
        }),
        superuser: Some(("postgres".into(), superuser_password)),
    };
    // The admin the Lambdas use is no superuser, like an RDS master.
    let admin_user = "cfn_admin".to_string();
    let admin_password = random_hex(16);
    bootstrap(&cluster, &admin_user, &admin_password);
    cluster.log().expect("the throwaway cluster has a server log");
    cluster.admin_user = admin_user;
    cluster.admin_password = admin_password;
    cluster
}

/// Certificates: a test CA, a server certificate for DNS:localhost only, an unrelated CA.
/// Returns the certificate directory and the two CA certificates.
fn make_certs(dir: &Path, ids: Option<(u32, u32)>) -> (PathBuf, PathBuf, PathBuf) {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    let (ca_crt, _) = make_ca(&certs, "ca", "local-invoke test CA");
    let (other_crt, _) = make_ca(&certs, "other-ca", "local-invoke unrelated CA");
    make_server_cert(&certs, "DNS:localhost");
    for file in ["server.crt", "server.key"] {
        chown(&certs.join(file), ids);
    }
    chmod(&certs.join("server.key"), 0o600);
    chown(&certs, ids);
    (certs, ca_crt, other_crt)
}

/// initdb with a superuser password and scram-sha-256 everywhere; returns the data directory.
fn init_data_dir(bin: &Path, dir: &Path, ids: Option<(u32, u32)>, superuser_password: &str) -> PathBuf {
    let pwfile = dir.join("pwfile");
    std::fs::write(&pwfile, superuser_password).expect("pwfile");
    chown(&pwfile, ids);
    chmod(&pwfile, 0o600);
    let data = dir.join("data");
    let mut initdb = command(&bin.join("initdb"), ids.is_some());
    initdb
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .current_dir(dir);
    run(initdb, "initdb");
    let _ = std::fs::remove_file(&pwfile);
    data
}

/// The server's settings: TLS with the test certificate, scram-sha-256, every statement logged,
/// no durability; and scram-sha-256 for every connection.
fn configure(data: &Path, dir: &Path, certs: &Path, port: u16) {
    let conf = format!(
        "\n# local-invoke throwaway cluster\n\
         listen_addresses = '127.0.0.1'\n\
         port = {port}\n\
         unix_socket_directories = '{dir}'\n\
         ssl = on\n\
         ssl_cert_file = '{certs}/server.crt'\n\
         ssl_key_file = '{certs}/server.key'\n\
         password_encryption = 'scram-sha-256'\n\
         log_statement = 'all'\n\
         log_connections = on\n\
         log_destination = 'stderr'\n\
         logging_collector = off\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n\
         max_connections = 200\n",
        dir = dir.display(),
        certs = certs.display(),
    );
    append(&data.join("postgresql.conf"), &conf);
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n",
    )
    .expect("pg_hba.conf");
}

/// Starts the postmaster, stopped at process exit, and waits until it listens on `port`;
/// returns its log file.
fn start_server(bin: &Path, data: &Path, dir: &Path, ids: Option<(u32, u32)>, port: u16) -> PathBuf {
    let log_file = dir.join("postgres.log");
    let log = std::fs::File::create(&log_file).expect("postgres log");
    let mut server = command(&bin.join("postgres"), ids.is_some());
    server
        .arg("-D")
        .arg(data)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    let child = server.spawn().expect("start postgres");
    own_child(child);
    // Runs before the kill above (reverse order): a clean, immediate stop of the postmaster.
    let pg_ctl = bin.join("pg_ctl");
    let data_dir = data.to_path_buf();
    let as_postgres = ids.is_some();
    at_shutdown(move || {
        let mut stop = command(&pg_ctl, as_postgres);
        stop.arg("-D")
            .arg(&data_dir)
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = stop
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    });
    assert!(
        wait_for_port(port, Duration::from_secs(60)),
        "postgres did not listen on port {port} within 60 s; see {}",
        log_file.display()
    );
    log_file
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for append");
    file.write_all(text.as_bytes()).expect("append");
}

/// As the bootstrap superuser: creates the RDS-master-like admin, then runs the server log's
/// marker statement. Runs on its own thread and runtime, since `postgres()` may be called from
/// inside the harness runtime.
fn bootstrap(cluster: &Postgres, admin_user: &str, admin_password: &str) {
    let sql = format!("CREATE ROLE {admin_user} LOGIN CREATEDB CREATEROLE PASSWORD '{admin_password}'");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async {
                    let until = Instant::now() + Duration::from_secs(60);
                    let client = loop {
                        match cluster
                            .connect(&cluster.admin_user, &cluster.admin_password, ADMIN_DATABASE)
                            .await
                        {
                            Ok(client) => break client,
                            Err(e) if Instant::now() < until => {
                                let _ = e;
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            Err(e) => {
                                panic!("cannot connect to the throwaway cluster as its superuser: {e:?}")
                            }
                        }
                    };
                    // Kept out of the statement log, which the tests search for leaked passwords
                    // (a multi-statement query is logged whole, so the SET goes on its own).
                    client
                        .batch_execute("SET log_statement = 'none'")
                        .await
                        .expect("SET log_statement");
                    client.batch_execute(&sql).await.expect("create the admin role");
                    if let Some(log) = &cluster.log_file {
                        client
                            .batch_execute("RESET log_statement")
                            .await
                            .expect("RESET log_statement");
                        let marker = format!("SELECT '{}'", log.marker);
                        client.batch_execute(&marker).await.expect("the log marker");
                    }
                });
            })
            .join()
            .expect("bootstrap thread");
    });
}
