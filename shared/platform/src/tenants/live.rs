//! Tenants without restart: the tenants a process serves, replaced as a whole when the
//! tenants file changes (polled) or on `SIGHUP`, and only once the new file is valid.
//!
//! A unit of work (a request, a consumed batch) takes one [`Tenants`] snapshot with
//! [`LiveTenants::current`] and uses it throughout, so it never sees half of an old
//! file and half of a new one; the next unit sees the new tenants. Components that
//! derive state from the tenants (metrics series, token caches) watch
//! [`LiveTenants::subscribe`].
//!
//! A file that does not parse or validate is refused: the error is logged naming the
//! key, and the tenants loaded before stay in force. Nothing is retried until the file
//! changes again or another `SIGHUP` arrives.
//!
//! Why polling and not inotify: a changed mtime is all we need, checked every few
//! seconds at the cost of one `stat`, with no dependency; it also sees Kubernetes'
//! Secret volume updates, which swap a symlink rather than write the file.

use super::Tenants;
use crate::config::ConfigError;
use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The tenants in force now, shared by every component of a process. Cheap to clone:
/// clones share the same tenants and see every replacement.
#[derive(Debug, Clone)]
pub struct LiveTenants {
    current: Arc<RwLock<Tenants>>,
    version: watch::Sender<u64>,
}

impl LiveTenants {
    /// Starts with `tenants`.
    pub fn new(tenants: Tenants) -> Self {
        Self {
            current: Arc::new(RwLock::new(tenants)),
            version: watch::Sender::new(0),
        }
    }

    /// The tenants in force now: a snapshot that later replacements do not change.
    pub fn current(&self) -> Tenants {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Puts `tenants` in force for every holder and tells the subscribers.
    pub fn replace(&self, tenants: Tenants) {
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = tenants;
        self.version.send_modify(|v| *v += 1);
    }

    /// A receiver that is marked changed at every replacement.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Calls `f` with every new version of the tenants until `cancel` fires, for
    /// state derived from them (metrics series, caches of per-tenant state).
    pub async fn for_each_change(&self, cancel: CancellationToken, mut f: impl FnMut(&Tenants)) {
        let mut changes = self.subscribe();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    f(&self.current());
                }
            }
        }
    }
}

impl From<Tenants> for LiveTenants {
    fn from(tenants: Tenants) -> Self {
        Self::new(tenants)
    }
}

/// What identifies one version of a file cheaply: modification time and length.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Loads the tenants again with `load` and puts them in force, or refuses them and
/// keeps the ones in force. Returns whether they were replaced.
pub fn reload(
    live: &LiveTenants,
    load: &dyn Fn() -> Result<Tenants, ConfigError>,
    why: &str,
) -> bool {
    match load() {
        Ok(tenants) => {
            let before = live.current();
            let ids = |t: &Tenants| t.all().iter().map(|t| t.id.clone()).collect::<Vec<_>>();
            let (old, new) = (ids(&before), ids(&tenants));
            let added: Vec<&String> = new.iter().filter(|id| !old.contains(id)).collect();
            let removed: Vec<&String> = old.iter().filter(|id| !new.contains(id)).collect();
            live.replace(tenants);
            tracing::info!(
                why,
                tenants = new.len(),
                added = ?added,
                removed = ?removed,
                "Tenants file reloaded; the new tenants are in force."
            );
            true
        }
        Err(e) => {
            tracing::error!(
                why,
                error.message = %e,
                tenants = live.current().all().len(),
                "Tenants file refused; the tenants loaded before stay in force."
            );
            false
        }
    }
}

/// Reloads the tenants file at `path` whenever its modification time or length
/// changes (checked every `poll`; never when `poll` is zero) and on `SIGHUP`, until
/// `cancel` fires. Without a file, a `SIGHUP` is only logged (it no longer ends the
/// process, as it would without a handler).
pub async fn watch_until_stopped(
    live: LiveTenants,
    path: Option<PathBuf>,
    load: impl Fn() -> Result<Tenants, ConfigError>,
    poll: Duration,
    cancel: CancellationToken,
) {
    let mut hangups = hangup_signals();
    let mut seen = path.as_deref().and_then(stamp);
    let polling = path.is_some() && !poll.is_zero();
    loop {
        let why = tokio::select! {
            _ = cancel.cancelled() => return,
            Some(()) = next_hangup(&mut hangups) => "SIGHUP",
            _ = tokio::time::sleep(poll), if polling => {
                let now = path.as_deref().and_then(stamp);
                if now == seen {
                    continue;
                }
                seen = now;
                "file changed"
            }
        };
        match &path {
            Some(_) => {
                seen = path.as_deref().and_then(stamp);
                reload(&live, &load, why);
            }
            None => tracing::info!(
                "SIGHUP received, but no tenants file is configured; nothing to reload."
            ),
        }
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

#[cfg(unix)]
fn hangup_signals() -> Hangups {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(error.message = %e, "Cannot listen for SIGHUP; the tenants file is only polled.");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signals() -> Hangups {
    None
}

/// The next `SIGHUP`; never, where there are none.
async fn next_hangup(hangups: &mut Hangups) -> Option<()> {
    #[cfg(unix)]
    if let Some(signal) = hangups {
        return signal.recv().await;
    }
    let _ = hangups;
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        io::Write,
        sync::{Arc, Mutex},
    };

    /// One `[[tenants]]` table with a source token.
    fn tenant_toml(id: &str, source_token: &str) -> String {
        format!(
            r#"
[[tenants]]
id = "{id}"
name = "Tỉnh {id}"
admin_tokens = ["{id}-admin"]
sources = [{{ id = "{id}-mot-cua", token = "{source_token}" }}]
[tenants.zalo]
app_id = "1"
app_secret = "s"
oa_id = "2"
oa_secret_key = "k"
refresh_token = "r"
openapi_url = "http://127.0.0.1:1"
business_url = "http://127.0.0.1:1"
oauth_url = "http://127.0.0.1:1"
templates = {{ receipt = "1234" }}
"#
        )
    }

    /// Log lines written while a test runs, for checking what an operator reads.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        crate::testing::eventually(Duration::from_secs(5), || {
            let ok = done();
            async move { ok.then_some(()) }
        })
        .await
        .unwrap_or_else(|_| panic!("{what}"));
    }

    fn ids(live: &LiveTenants) -> Vec<String> {
        live.current().all().iter().map(|t| t.id.clone()).collect()
    }

    #[tokio::test]
    async fn a_changed_tenants_file_is_put_in_force_and_a_broken_one_is_refused_keeping_the_tenants_in_force(
    ) {
        // Arrange: a file with one province, watched every 20 ms.
        let dir = std::env::temp_dir().join(format!("loa-tenants-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tenants.toml");
        std::fs::write(&path, tenant_toml("dong-nai", "dn-token")).unwrap();
        let load = {
            let path = path.clone();
            move || Tenants::load(Some(&path), "http://unused")
        };
        let live = LiveTenants::new(load().unwrap());
        let held = live.clone();
        let lines = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let lines = lines.clone();
                move || lines.clone()
            })
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let cancel = CancellationToken::new();
        let watcher = tokio::spawn(watch_until_stopped(
            live.clone(),
            Some(path.clone()),
            load,
            Duration::from_millis(20),
            cancel.clone(),
        ));
        let mut changes = live.subscribe();

        // Act: a second province, with a rotated source token for the first.
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(
            &path,
            tenant_toml("dong-nai", "dn-token-2") + &tenant_toml("binh-duong", "bd-token"),
        )
        .unwrap();

        // Assert: every holder sees it, the old token no longer works.
        until("the new file is put in force", || ids(&held).len() == 2).await;
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        let now = held.current();
        assert_eq!(now.source_by_token("dn-token-2").unwrap().0.id, "dong-nai");
        assert!(now.source_by_token("dn-token").is_none());
        assert_eq!(now.source_by_token("bd-token").unwrap().0.id, "binh-duong");

        // Act: a broken file (the same id twice), then one that is not TOML.
        std::fs::write(
            &path,
            tenant_toml("dong-nai", "a") + &tenant_toml("dong-nai", "b"),
        )
        .unwrap();
        until("the duplicate is refused", || {
            lines.text().contains("Tenants file refused")
        })
        .await;
        std::fs::write(&path, "[[tenants]\nid = ").unwrap();
        until("the garbage is refused", || {
            lines.text().matches("Tenants file refused").count() == 2
        })
        .await;

        // Assert: the tenants in force stay, and the log says why, naming the key.
        assert_eq!(ids(&held), ["dong-nai", "binh-duong"]);
        assert!(!changes.has_changed().unwrap(), "nothing was replaced");
        let log = lines.text();
        assert!(
            log.contains("tenants.dong-nai") && log.contains("duplicate tenant id"),
            "{log}"
        );
        assert!(log.contains("tenants_file"), "{log}");
        assert!(
            !log.contains("dn-token") && !log.contains("bd-token"),
            "no secret in the log: {log}"
        );
        cancel.cancel();
        watcher.await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn every_version_put_in_force_reaches_the_components_that_derive_state_from_it() {
        // Arrange
        let one = Tenants::new(vec![super::super::demo_tenant("http://x")]).unwrap();
        let mut other = super::super::demo_tenant("http://x");
        other.id = "other".into();
        let two = Tenants::new(vec![super::super::demo_tenant("http://x"), other]).unwrap();
        let live = LiveTenants::new(one);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let follower = tokio::spawn({
            let (live, seen, cancel) = (live.clone(), seen.clone(), cancel.clone());
            async move {
                live.for_each_change(cancel, |t| seen.lock().unwrap().push(t.all().len()))
                    .await
            }
        });
        tokio::task::yield_now().await;

        // Act
        live.replace(two);

        // Assert
        until("the follower saw the new version", || {
            *seen.lock().unwrap() == [2]
        })
        .await;
        cancel.cancel();
        follower.await.unwrap();
    }
}
