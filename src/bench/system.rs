//! The system under test: a private database and vhost, `n` tenants on the Zalo
//! sandbox, and the four services either in this process (`runner::start(All)`) or as
//! separate `loa run <target>` child processes (`--split`), on free loopback ports.
//! Everything is stopped and removed when the run ends, also on an error or Ctrl-C
//! (children are killed on drop, the database and vhost are dropped by [`TestEnv`]).
//!
//! Split, a child can be killed and started again on the same port, database and
//! vhost ([`SystemUnderTest::kill`], [`SystemUnderTest::respawn`]): what `loa chaos`
//! does to it.

use super::procstat::Measured;
use crate::{
    runner::{self, RunningSystem, Target},
    settings::Settings,
};
use anyhow::Context;
use loa_platform::{
    tenants::{demo_tenant, QuietHours, TenantSettings},
    testing::TestEnv,
    CommonSettings, Credential, Secret, Tenants,
};
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};
use tokio_util::sync::CancellationToken;

/// How long the services may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before processes are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A Zalo rate limit given to every tenant (`zalo.rate_per_second` / `burst`).
#[derive(Debug, Clone, Copy)]
pub struct ZaloRate {
    /// Sustained sends per second per app.
    pub per_second: f64,
    /// Bucket size.
    pub burst: u32,
}

impl ZaloRate {
    /// Effectively no limit: for the pipeline and latency runs.
    pub const LIFTED: ZaloRate = ZaloRate {
        per_second: 1_000_000.0,
        burst: 1_000_000,
    };
}

/// One benchmark tenant: its id and the source token intake accepts for it.
#[derive(Debug, Clone)]
pub struct BenchTenant {
    /// Tenant id (`bench-01`).
    pub id: String,
    /// Its upstream source's bearer token.
    pub token: String,
}

/// `n` tenants cloned from the demo tenant, each with its own source token, admin
/// token, Zalo app and OA, all pointing at `sandbox_url`.
pub fn bench_tenants(n: usize, sandbox_url: &str, rate: ZaloRate) -> Vec<TenantSettings> {
    (1..=n.max(1))
        .map(|i| {
            let mut t = demo_tenant(sandbox_url);
            t.id = format!("bench-{i:02}");
            t.name = format!("Tỉnh thử nghiệm {i:02}");
            t.sources[0].id = format!("bench-{i:02}-one-stop");
            t.sources[0].token = Credential::new(format!("bench-token-{i:02}"));
            t.admin_tokens = vec![Credential::new(format!("bench-admin-{i:02}"))];
            t.zalo.app_id = (1_000_000_000_000_000_100u64 + i as u64).to_string();
            t.zalo.oa_id = (2_000_000_000_000_000_100u64 + i as u64).to_string();
            t.zalo.refresh_token = Secret::new(format!("bench-refresh-token-{i:02}"));
            t.zalo.rate_per_second = rate.per_second;
            t.zalo.burst = rate.burst;
            // A benchmark runs at any hour: broadcasts are not held at night.
            t.broadcasts.quiet_hours = QuietHours::NONE;
            t
        })
        .collect()
}

fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The tenants file (`LOA_TENANTS_FILE`) the child processes load.
pub fn tenants_toml(tenants: &[TenantSettings]) -> String {
    let mut out = String::new();
    for t in tenants {
        let q = |s: &str| toml_string(s);
        let _ = writeln!(out, "[[tenants]]\nid = {}\nname = {}", q(&t.id), q(&t.name));
        let admins: Vec<String> = t.admin_tokens.iter().map(|a| q(&a.file_value())).collect();
        let _ = writeln!(out, "admin_tokens = [{}]", admins.join(", "));
        let sources: Vec<String> = t
            .sources
            .iter()
            .map(|s| {
                format!(
                    "{{ id = {}, token = {} }}",
                    q(&s.id),
                    q(&s.token.file_value())
                )
            })
            .collect();
        let _ = writeln!(out, "sources = [{}]", sources.join(", "));
        let z = &t.zalo;
        let _ = writeln!(out, "[tenants.zalo]");
        for (key, value) in [
            ("app_id", z.app_id.as_str()),
            ("app_secret", z.app_secret.expose()),
            ("oa_id", z.oa_id.as_str()),
            ("oa_secret_key", z.oa_secret_key.expose()),
            ("refresh_token", z.refresh_token.expose()),
            ("openapi_url", z.openapi_url.as_str()),
            ("business_url", z.business_url.as_str()),
            ("oauth_url", z.oauth_url.as_str()),
        ] {
            let _ = writeln!(out, "{key} = {}", q(value));
        }
        let _ = writeln!(out, "rate_per_second = {:?}", z.rate_per_second);
        let _ = writeln!(out, "burst = {}", z.burst);
        let _ = writeln!(out, "transactional_reserve = {:?}", z.transactional_reserve);
        let templates: Vec<String> = z
            .templates
            .iter()
            .map(|(k, v)| format!("{k} = {}", q(v)))
            .collect();
        let _ = writeln!(out, "templates = {{ {} }}", templates.join(", "));
        let _ = writeln!(
            out,
            "[tenants.broadcasts]\nquiet_hours = {}\narticle_broadcasts = {}\n",
            q(&t.broadcasts.quiet_hours.to_string()),
            t.broadcasts.article_broadcasts
        );
    }
    out
}

/// How the services run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// All four in this process (measured as `all`, which includes the load generator).
    InProcess,
    /// Each as its own `loa run <target>` child process.
    Split,
}

impl Mode {
    /// `in-process` or `split`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProcess => "in-process",
            Self::Split => "split",
        }
    }
}

/// What a split system runs with beyond the benchmarks' defaults.
#[derive(Debug, Clone, Default)]
pub struct SplitOptions {
    /// Send the sandbox's signed webhooks (delivery receipts) to the notifier, as Zalo
    /// does; the benchmarks leave them off (the send path is the same without them).
    pub receipts: bool,
    /// Extra `LOA_*` settings (name, value) given to every service.
    pub settings: Vec<(String, String)>,
    /// Keep the services' logs after the run (their directory is
    /// [`SystemUnderTest::log_dir`]) instead of removing them.
    pub keep_logs: bool,
    /// Run the services from this `loa` binary instead of the running one (another
    /// build, to compare).
    pub binary: Option<PathBuf>,
}

/// The split services: the four `loa run <target>` targets, in start order.
pub const SPLIT_TARGETS: [&str; 4] = ["zalo-sandbox", "tracker", "notifier", "intake"];

/// How to start a child again: the binary, its environment and the ports.
struct Launch {
    exe: PathBuf,
    env: Vec<(String, String)>,
    /// Base URL per target.
    urls: Vec<(&'static str, String)>,
}

/// A `loa run <target>` child, killed if dropped before being stopped.
struct ChildService {
    name: &'static str,
    child: tokio::process::Child,
    log: PathBuf,
}

enum Running {
    InProcess(Option<RunningSystem>),
    Split(Vec<ChildService>),
}

/// A running system and what the harness needs to drive and measure it. Dropping it
/// kills the services and removes the database, the vhost and the temporary files.
pub struct SystemUnderTest {
    running: Running,
    /// Intake's base URL.
    pub intake: String,
    /// The sandbox's base URL.
    pub sandbox: String,
    /// The processes to measure.
    pub processes: Vec<Measured>,
    /// How the services run.
    pub mode: Mode,
    /// The tenants, with their source tokens.
    pub tenants: Vec<BenchTenant>,
    /// Base URLs of every service, for `/readyz`.
    ready: Vec<String>,
    /// How to start a split child again.
    launch: Option<Launch>,
    /// The private database and vhost; declared after `running` so the services stop
    /// before their database is dropped.
    pub env: TestEnv,
    temp_dir: PathBuf,
    keep_logs: bool,
}

fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("Failed to find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Starts the system: a fresh database and vhost, `tenants` tenants with Zalo rate
/// `rate`, the services in this process or split, and waits until all are ready.
pub async fn start(
    base: &Settings,
    config_file: Option<&Path>,
    tenants: usize,
    rate: ZaloRate,
    mode: Mode,
) -> anyhow::Result<SystemUnderTest> {
    start_with(
        base,
        config_file,
        tenants,
        rate,
        mode,
        &SplitOptions::default(),
    )
    .await
}

/// [`start`] with the options of a split system (ignored in process).
pub async fn start_with(
    base: &Settings,
    config_file: Option<&Path>,
    tenants: usize,
    rate: ZaloRate,
    mode: Mode,
    options: &SplitOptions,
) -> anyhow::Result<SystemUnderTest> {
    let env = TestEnv::new()
        .await
        .context("Failed to create the benchmark's database and vhost (are PostgreSQL and RabbitMQ running?)")?;
    let temp_dir = std::env::temp_dir().join(format!("loa-bench-{}", env.name));
    std::fs::create_dir_all(&temp_dir)
        .with_context(|| format!("Failed to create {}", temp_dir.display()))?;
    let mut system = SystemUnderTest {
        running: Running::Split(Vec::new()),
        intake: String::new(),
        sandbox: String::new(),
        processes: Vec::new(),
        mode,
        tenants: Vec::new(),
        ready: Vec::new(),
        launch: None,
        env,
        temp_dir,
        keep_logs: options.keep_logs,
    };
    match mode {
        Mode::InProcess => system.start_in_process(base, tenants, rate).await?,
        Mode::Split => {
            system
                .start_split(config_file, tenants, rate, options)
                .await?
        }
    }
    system.wait_ready().await?;
    Ok(system)
}

impl SystemUnderTest {
    async fn start_in_process(
        &mut self,
        base: &Settings,
        n: usize,
        rate: ZaloRate,
    ) -> anyhow::Result<()> {
        let list = bench_tenants(n, "http://127.0.0.1:1", rate);
        self.tenants = describe(&list);
        let mut services = base.services.clone();
        services.intake.bind = "127.0.0.1:0".into();
        services.tracker.bind = "127.0.0.1:0".into();
        services.notifier.bind = "127.0.0.1:0".into();
        services.sandbox.bind = "127.0.0.1:0".into();
        services.console.bind = "127.0.0.1:0".into();
        // Receipt webhooks need the notifier's endpoint; with or without them the send
        // path is the same, and the split mode has none either.
        services.sandbox.webhook_url = None;
        services.tracker.lookup_secret = Secret::new(self.lookup_secret());
        let settings = Settings {
            common: CommonSettings {
                amqp_url: self.env.amqp_url.clone(),
                database_url: self.env.database_url.clone(),
                // Without a tenants file the runner points the tenants at the sandbox.
                tenants_file: None,
                ..base.common.clone()
            },
            services,
            tenants: Tenants::new(list).context("Benchmark tenants are invalid")?,
        };
        let system = runner::start(Target::All, &settings, CancellationToken::new()).await?;
        let port = |p: Option<u16>, what: &str| p.with_context(|| format!("{what} did not start"));
        self.intake = format!("http://127.0.0.1:{}", port(system.intake_port, "intake")?);
        self.sandbox = format!(
            "http://127.0.0.1:{}",
            port(system.sandbox_port, "the sandbox")?
        );
        self.processes = vec![Measured {
            name: "all".into(),
            pid: std::process::id(),
        }];
        self.ready = [
            system.intake_port,
            system.tracker_port,
            system.notifier_port,
            system.sandbox_port,
        ]
        .into_iter()
        .flatten()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
        self.running = Running::InProcess(Some(system));
        Ok(())
    }

    async fn start_split(
        &mut self,
        config_file: Option<&Path>,
        n: usize,
        rate: ZaloRate,
        options: &SplitOptions,
    ) -> anyhow::Result<()> {
        let exe = match &options.binary {
            Some(binary) => binary.clone(),
            None => std::env::current_exe().context("Failed to find the loa binary")?,
        };
        let ports = [
            ("intake", free_port()?),
            ("tracker", free_port()?),
            ("notifier", free_port()?),
            ("sandbox", free_port()?),
        ];
        let url = |p: u16| format!("http://127.0.0.1:{p}");
        let sandbox_url = url(ports[3].1);
        let list = bench_tenants(n, &sandbox_url, rate);
        self.tenants = describe(&list);
        let tenants_file = self.temp_dir.join("tenants.toml");
        std::fs::write(&tenants_file, tenants_toml(&list))
            .with_context(|| format!("Failed to write {}", tenants_file.display()))?;
        let mut env: Vec<(String, String)> = vec![
            ("LOA_AMQP_URL".into(), self.env.amqp_url.clone()),
            ("LOA_DATABASE_URL".into(), self.env.database_url.clone()),
            (
                "LOA_TENANTS_FILE".into(),
                tenants_file.display().to_string(),
            ),
            ("LOA_SANDBOX_URL".into(), sandbox_url.clone()),
            ("LOA_LOG_FORMAT".into(), "json".into()),
            ("LOA_TRACKER__LOOKUP_SECRET".into(), self.lookup_secret()),
        ];
        if options.receipts {
            env.push((
                "LOA_SANDBOX__WEBHOOK_URL".into(),
                format!("{}/zalo/webhook", url(ports[2].1)),
            ));
        }
        if let Some(file) = config_file {
            env.push(("LOA_CONFIG".into(), file.display().to_string()));
        }
        for (service, port) in ports {
            env.push((
                format!("LOA_{}__BIND", service.to_uppercase()),
                format!("127.0.0.1:{port}"),
            ));
        }
        env.extend(options.settings.iter().cloned());
        self.launch = Some(Launch {
            exe,
            env,
            urls: vec![
                ("intake", url(ports[0].1)),
                ("tracker", url(ports[1].1)),
                ("notifier", url(ports[2].1)),
                ("zalo-sandbox", sandbox_url.clone()),
            ],
        });
        let mut children = Vec::new();
        for target in SPLIT_TARGETS {
            let child = self.spawn_child(target)?;
            self.processes.push(Measured {
                name: target.to_owned(),
                pid: child.child.id().context("a just-spawned child has a pid")?,
            });
            children.push(child);
        }
        self.intake = url(ports[0].1);
        self.sandbox = sandbox_url;
        self.ready = ports.iter().map(|(_, p)| url(*p)).collect();
        self.running = Running::Split(children);
        Ok(())
    }

    /// Starts `loa run <target>` with the system's environment; its stderr is appended
    /// to `<target>.log`, so the log of every lifetime of a restarted service is kept.
    fn spawn_child(&self, target: &'static str) -> anyhow::Result<ChildService> {
        let launch = self
            .launch
            .as_ref()
            .context("only a split system starts child processes")?;
        let log = self.temp_dir.join(format!("{target}.log"));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("Failed to open {}", log.display()))?;
        let mut cmd = tokio::process::Command::new(&launch.exe);
        cmd.args(["run", target])
            .env_remove("LOA_SANDBOX__WEBHOOK_URL")
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("Failed to start `loa run {target}`"))?;
        Ok(ChildService {
            name: target,
            child,
            log,
        })
    }

    /// The base URL of a split service (`intake`, `tracker`, `notifier`,
    /// `zalo-sandbox`).
    pub fn url(&self, target: &str) -> Option<&str> {
        let launch = self.launch.as_ref()?;
        launch
            .urls
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, u)| u.as_str())
    }

    /// SIGKILLs a split service (no graceful shutdown: in-flight work is abandoned
    /// mid-way) and reaps it.
    pub async fn kill(&mut self, target: &str) -> anyhow::Result<()> {
        let Running::Split(children) = &mut self.running else {
            anyhow::bail!("only a split system's services can be killed");
        };
        let c = children
            .iter_mut()
            .find(|c| c.name == target)
            .with_context(|| format!("no service {target}"))?;
        // `kill` sends SIGKILL and waits for the exit.
        c.child
            .kill()
            .await
            .with_context(|| format!("Failed to kill `loa run {target}`"))
    }

    /// Starts a killed split service again, on its port, database and vhost. Returns
    /// at once; the service is ready when its `/readyz` answers (see [`Self::url`]).
    pub fn respawn(&mut self, target: &str) -> anyhow::Result<()> {
        let name = SPLIT_TARGETS
            .into_iter()
            .find(|t| *t == target)
            .with_context(|| format!("no service {target}"))?;
        let fresh = self.spawn_child(name)?;
        let pid = fresh.child.id().context("a just-spawned child has a pid")?;
        let Running::Split(children) = &mut self.running else {
            anyhow::bail!("only a split system's services can be restarted");
        };
        let slot = children
            .iter_mut()
            .find(|c| c.name == name)
            .with_context(|| format!("no service {target}"))?;
        *slot = fresh;
        if let Some(p) = self.processes.iter_mut().find(|p| p.name == name) {
            p.pid = pid;
        }
        Ok(())
    }

    /// Where the services' logs are (kept after the run with
    /// [`SplitOptions::keep_logs`]).
    pub fn log_dir(&self) -> &Path {
        &self.temp_dir
    }

    /// A throw-away lookup secret (the default one makes the tracker warn).
    fn lookup_secret(&self) -> String {
        format!("loa-bench-{}", self.env.name)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        for base in self.ready.clone() {
            loop {
                let ok = client
                    .get(format!("{base}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    break;
                }
                if let Some(dead) = self.exited_child() {
                    anyhow::bail!(
                        "`loa run {dead}` exited during start-up:\n{}",
                        self.log_tails()
                    );
                }
                if tokio::time::Instant::now() >= deadline {
                    anyhow::bail!(
                        "{base} did not become ready within {READY_TIMEOUT:?}:\n{}",
                        self.log_tails()
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// The first child process that has exited, if any.
    pub fn exited_child(&mut self) -> Option<&'static str> {
        match &mut self.running {
            Running::InProcess(_) => None,
            Running::Split(children) => children
                .iter_mut()
                .find_map(|c| (!matches!(c.child.try_wait(), Ok(None))).then_some(c.name)),
        }
    }

    /// The last lines of every child's log, for a failure message.
    pub fn log_tails(&self) -> String {
        let Running::Split(children) = &self.running else {
            return String::new();
        };
        let mut out = String::new();
        for c in children {
            let text = std::fs::read_to_string(&c.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(8)..];
            let _ = writeln!(out, "--- {} ({}):", c.name, c.log.display());
            for l in tail {
                let _ = writeln!(out, "{l}");
            }
        }
        out
    }

    /// Stops the services gracefully (SIGTERM for children), killing what does not
    /// stop within a bound, then drops the database and vhost.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        match &mut self.running {
            Running::InProcess(system) => {
                if let Some(system) = system.take() {
                    match tokio::time::timeout(STOP_TIMEOUT, system.stop()).await {
                        Ok(result) => result?,
                        Err(_) => {
                            tracing::warn!("The services did not stop in time; abandoning them.")
                        }
                    }
                }
            }
            Running::Split(children) => {
                for c in children.iter() {
                    if let Some(pid) = c.child.id() {
                        // The children are ours: stop each by its own pid.
                        let _ = tokio::process::Command::new("kill")
                            .args(["-TERM", &pid.to_string()])
                            .status()
                            .await;
                    }
                }
                for c in children.iter_mut() {
                    if tokio::time::timeout(STOP_TIMEOUT, c.child.wait())
                        .await
                        .is_err()
                    {
                        tracing::warn!(
                            service = c.name,
                            "A service did not stop in time; killing it."
                        );
                        let _ = c.child.kill().await;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Drop for SystemUnderTest {
    fn drop(&mut self) {
        // Children are killed by `kill_on_drop`; in-process services are aborted with
        // their runtime tasks. Then the temporary files go; `env` drops the database.
        if let Running::Split(children) = &mut self.running {
            for c in children.iter_mut() {
                let _ = c.child.start_kill();
            }
        }
        if !self.keep_logs {
            let _ = std::fs::remove_dir_all(&self.temp_dir);
        }
    }
}

fn describe(list: &[TenantSettings]) -> Vec<BenchTenant> {
    list.iter()
        .map(|t| BenchTenant {
            id: t.id.clone(),
            token: t.sources[0].token.file_value(),
        })
        .collect()
}
