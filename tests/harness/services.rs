//! The real local services the Lambdas talk to, started once per test process and stopped by
//! [`shutdown`]: a moto server (SSM, KMS, ELBv2) from the project venv, reached through
//! `AWS_ENDPOINT_URL`. An `AWS_ENDPOINT_URL` given from outside is used instead.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The repository root: found at run time, upwards from the working directory (cargo runs tests
/// in `tests/`, make runs the demo and bench at the root). Not `CARGO_MANIFEST_DIR` alone: a
/// target directory shared by several clones (CI's) can reuse this crate compiled in another
/// clone, whose path is baked into it.
pub fn repo_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let is_root = |dir: &Path| dir.join("Cargo.lock").is_file() && dir.join("tests/harness").is_dir();
        std::env::current_dir()
            .ok()
            .and_then(|cwd| cwd.ancestors().find(|d| is_root(d)).map(Path::to_path_buf))
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .canonicalize()
            .expect("repo root")
    })
    .clone()
}

/// The project venv's `bin/`, made by `make venv`.
pub fn venv_bin(tool: &str) -> PathBuf {
    let path = repo_root().join(".venv/bin").join(tool);
    assert!(
        path.is_file(),
        "{} is missing: run `make venv` (make test does)",
        path.display()
    );
    path
}

/// A directory for service data and logs of this test process, under the system temp dir.
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("local-invoke-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    })
}

type Cleanup = Box<dyn FnOnce() + Send>;

fn cleanups() -> &'static Mutex<Vec<Cleanup>> {
    static CLEANUPS: OnceLock<Mutex<Vec<Cleanup>>> = OnceLock::new();
    CLEANUPS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Runs `cleanup` at [`shutdown`], in reverse order of registration.
pub fn at_shutdown(cleanup: impl FnOnce() + Send + 'static) {
    cleanups().lock().unwrap().push(Box::new(cleanup));
}

/// Keeps a child process until [`shutdown`], which kills it by its PID and reaps it.
pub fn own_child(mut child: Child) {
    at_shutdown(move || {
        let _ = child.kill();
        let _ = child.wait();
    });
}

/// Stops every service this process started and removes the scratch directory.
pub fn shutdown() {
    let mut cleanups = std::mem::take(&mut *cleanups().lock().unwrap());
    while let Some(cleanup) = cleanups.pop() {
        cleanup();
    }
    let dir = std::env::temp_dir().join(format!("local-invoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(dir);
}

/// A free loopback TCP port (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16, wait: Duration) -> bool {
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// The moto server: SSM, KMS and ELBv2 at [`Moto::endpoint`].
#[derive(Debug)]
pub struct Moto {
    /// `http://127.0.0.1:PORT`, the value for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
}

/// The shared moto server, started on first use (or the `AWS_ENDPOINT_URL` given from outside).
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
            return Moto { endpoint };
        }
        let port = free_port();
        let log = std::fs::File::create(scratch_dir().join("moto.log")).expect("moto log");
        let child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start moto_server");
        own_child(child);
        assert!(
            wait_for_port(port, Duration::from_secs(60)),
            "moto_server did not listen on port {port} within 60 s; see {}",
            scratch_dir().join("moto.log").display()
        );
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    })
}

impl Moto {
    /// An SSM client for this moto server, for set-up and assertions.
    pub fn ssm(&self) -> aws_sdk_ssm::Client {
        let config = aws_sdk_ssm::Config::builder()
            .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
            .region(aws_sdk_ssm::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .http_client(cfn_custom_resource::https_client())
            .credentials_provider(aws_sdk_ssm::config::Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "local-invoke",
            ))
            .build();
        aws_sdk_ssm::Client::from_conf(config)
    }

    /// The environment a Lambda needs to reach this moto server.
    pub fn env(&self) -> Vec<(&'static str, &str)> {
        vec![("AWS_ENDPOINT_URL", self.endpoint.as_str())]
    }

    /// Runs a Python script with the venv's interpreter (boto3) against this moto server, with
    /// `args`; returns its stdout. Used for fixtures the Rust SDK crates we ship do not cover.
    pub fn python(&self, script: &str, args: &[&str]) -> String {
        let output = Command::new(venv_bin("python"))
            .arg("-c")
            .arg(script)
            .args(args)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .expect("run venv python");
        assert!(
            output.status.success(),
            "fixture script failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}
