use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// Which build of a binary to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

/// The target directory: the test executable lives in `<target>/<profile>/deps/`.
fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            crate::services::repo_root().join(dir)
        };
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .find(|p| p.join("debug").is_dir() || p.join("release").is_dir())
        .filter(|p| p.file_name().is_some_and(|n| n != "deps"))
        .map(Path::to_path_buf)
        .unwrap_or_else(|| crate::services::repo_root().join("target"))
}

/// The path of a workspace binary in the given profile; panics with the command to build it.
pub fn binary_path(name: &str, profile: Profile) -> PathBuf {
    let (dir, flag) = match profile {
        Profile::Debug => ("debug", ""),
        Profile::Release => ("release", " --release"),
    };
    let path = target_dir().join(dir).join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build{flag} -p {name}` (make test does)",
        path.display()
    );
    path
}

/// A Lambda binary running as a child process against a runtime API. Killed when dropped.
pub struct Lambda {
    child: Child,
    logs: Arc<Mutex<Vec<u8>>>,
    pub started_at: std::time::Instant,
}

impl Lambda {
    /// Starts `binary` with the Lambda environment (function name from the file name, 128 MB,
    /// `$LATEST`, region us-east-1, dummy credentials) plus `env`, and nothing else from the
    /// parent's environment but `PATH`.
    pub fn spawn(binary: &Path, runtime_api: &str, env: &[(&str, &str)]) -> Self {
        let name = binary.file_name().and_then(|n| n.to_str()).unwrap_or("lambda");
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let started_at = std::time::Instant::now();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let logs = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            std::thread::spawn(move || pump(stream, logs));
        }
        Self {
            child,
            logs,
            started_at,
        }
    }

    /// Everything the process printed so far, stdout and stderr interleaved by line.
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&self.logs.lock().unwrap()).into_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Peak resident set size so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

fn pump(mut stream: Box<dyn Read + Send>, logs: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        logs.lock().unwrap().extend_from_slice(&buf[..n]);
    }
}

impl Drop for Lambda {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
