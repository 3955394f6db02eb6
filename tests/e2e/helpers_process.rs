//! The services as `loa run <target>` child processes on the test's database and
//! vhost, every one on its own free loopback port.

use loa_platform::testing::TestEnv;
use std::process::{Child, Command, Stdio};

/// A `loa run <target>` child process, killed on drop.
pub struct Process(Child);

impl Process {
    /// SIGKILL: no graceful shutdown, no in-flight batch finished, nothing acked.
    pub fn kill_hard(&mut self) {
        self.0.kill().expect("the process can be killed");
        self.0.wait().expect("the killed process is reaped");
    }

    /// Sends a signal (`HUP`, `TERM`, …) with `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.0.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        self.0
            .try_wait()
            .expect("the process can be waited for")
            .is_none()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where each service listens.
pub struct Ports {
    pub intake: u16,
    pub tracker: u16,
    pub notifier: u16,
    pub sandbox: u16,
}

impl Ports {
    /// Four free ports.
    pub fn free() -> Self {
        Self {
            intake: free_port(),
            tracker: free_port(),
            notifier: free_port(),
            sandbox: free_port(),
        }
    }
}

/// The HTTP base URL of a port on loopback.
pub fn base(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Spawns `loa run <target>` with every service's address from `ports`, the
/// sandbox's webhooks going to the notifier, and `settings` (`LOA_*` variables) on
/// top. Logs go to stderr when `TEST_LOG` is set.
pub fn spawn(target: &str, env: &TestEnv, ports: &Ports, settings: &[(&str, &str)]) -> Process {
    let stderr = if std::env::var_os("TEST_LOG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    spawn_with_stderr(target, env, ports, settings, stderr)
}

/// [`spawn`], with the process's logs (stderr) going to `stderr`.
pub fn spawn_with_stderr(
    target: &str,
    env: &TestEnv,
    ports: &Ports,
    settings: &[(&str, &str)],
    stderr: Stdio,
) -> Process {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loa"));
    cmd.args(["run", target])
        .env("LOA_AMQP_URL", &env.amqp_url)
        .env("LOA_DATABASE_URL", &env.database_url)
        .env("LOA_SANDBOX_URL", base(ports.sandbox))
        .env("LOA_LOG_FORMAT", "json")
        .env("LOA_INTAKE__BIND", format!("127.0.0.1:{}", ports.intake))
        .env("LOA_TRACKER__BIND", format!("127.0.0.1:{}", ports.tracker))
        .env(
            "LOA_NOTIFIER__BIND",
            format!("127.0.0.1:{}", ports.notifier),
        )
        .env("LOA_SANDBOX__BIND", format!("127.0.0.1:{}", ports.sandbox))
        .env("LOA_CONSOLE__BIND", "127.0.0.1:0")
        .env(
            "LOA_SANDBOX__WEBHOOK_URL",
            format!("{}/zalo/webhook", base(ports.notifier)),
        )
        .envs(settings.iter().copied())
        .stdout(Stdio::null())
        .stderr(stderr);
    Process(cmd.spawn().expect("the loa binary runs"))
}
