//! A small WebDriver client over `reqwest` driving Debian's headless Chromium through
//! `chromedriver` (WebDriver is JSON over HTTP): enough to sign in, fill forms, click,
//! read pages and keep screenshots. Each [`Browser`] runs its own chromedriver on a
//! free port with a fresh profile, and stops both when dropped.

use serde_json::{json, Value};
use std::{
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// The key WebDriver names element references with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where screenshots are kept (a test artifact).
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots")
}

/// A headless Chromium session.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a new headless session.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // Its own process group, so that stopping it also stops the Chromium it runs.
        let driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (scripts/ensure-tools)");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a client builds");
        loa_platform::testing::eventually(Duration::from_secs(20), || async {
            let r = http.get(format!("{base}/status")).send().await.ok()?;
            let v: Value = r.json().await.ok()?;
            v["value"]["ready"].as_bool().filter(|r| *r)
        })
        .await
        .expect("chromedriver became ready");
        let profile =
            std::env::temp_dir().join(format!("loa-webdriver-{}-{port}", std::process::id()));
        let chrome = std::path::Path::new("/usr/bin/chromium")
            .exists()
            .then_some("/usr/bin/chromium");
        let mut options = json!({"args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--window-size=1280,900", "--lang=vi",
            format!("--user-data-dir={}", profile.display()),
        ]});
        if let Some(binary) = chrome {
            options["binary"] = json!(binary);
        }
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome", "goog:chromeOptions": options
            }}}))
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("a JSON answer");
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a WebDriver session starts: {created}"))
            .to_owned();
        Self {
            http,
            session: format!("{base}/session/{session}"),
            driver,
            profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    /// A command, or WebDriver's error.
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("a JSON answer");
        if answer["value"]["error"].is_string() {
            return Err(answer["value"].clone());
        }
        Ok(answer["value"].clone())
    }

    /// Loads a page and waits for it.
    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// The string a GET of the session's `path` answers (empty when it is not one):
    /// the URL, the title and the source are read so.
    async fn get_string(&self, path: &str) -> String {
        self.call(reqwest::Method::GET, path, None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.get_string("/url").await
    }

    /// The page's title.
    pub async fn title(&self) -> String {
        self.get_string("/title").await
    }

    /// The page's HTML as the browser holds it.
    pub async fn source(&self) -> String {
        self.get_string("/source").await
    }

    /// The visible text of the page's body (once the page a click led to has
    /// replaced the previous one).
    pub async fn text(&self) -> String {
        for _ in 0..50 {
            let body = self.find("body").await;
            match self
                .try_call(reqwest::Method::GET, &format!("/element/{body}/text"), None)
                .await
            {
                Ok(text) => return text.as_str().unwrap_or_default().to_owned(),
                Err(e) if e["error"] == "stale element reference" => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("WebDriver text: {e}"),
            }
        }
        panic!("the page kept changing")
    }

    /// The elements matching a CSS selector.
    pub async fn find_all(&self, css: &str) -> Vec<String> {
        self.call(
            reqwest::Method::POST,
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
        .collect()
    }

    /// The first element matching a CSS selector (panics if none).
    pub async fn find(&self, css: &str) -> String {
        self.find_all(css)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element matches {css:?}"))
    }

    /// Types into the element matching `css` (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Chooses a file for the `<input type=file>` matching `css`.
    pub async fn upload(&self, css: &str, path: &std::path::Path) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": path.to_str().expect("a UTF-8 path")})),
        )
        .await;
    }

    /// The text of the first element matching `css`, waiting until one exists (a page
    /// that reloads itself may be between two loads).
    pub async fn text_of(&self, css: &str) -> String {
        loa_platform::testing::eventually(Duration::from_secs(20), || async {
            let found = self
                .try_call(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await
                .ok()?;
            let id = found.as_object()?.values().next()?.as_str()?.to_owned();
            let text = self
                .try_call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
                .await
                .ok()?;
            text.as_str().map(str::to_owned)
        })
        .await
        .unwrap_or_else(|_| panic!("no element matches {css:?}"))
    }

    /// Clicks the element matching `css` without leaving the page (a checkbox, an
    /// option).
    pub async fn check(&self, css: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Sets the value of the input matching `css` as a picker would (a `datetime-local`
    /// takes `2026-12-10T08:30` whatever the browser's locale; typed keys do not).
    pub async fn set_value(&self, css: &str, value: &str) {
        self.find(css).await;
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({
                "script": "document.querySelector(arguments[0]).value = arguments[1];",
                "args": [css, value]
            })),
        )
        .await;
    }

    /// Clicks a link or a submit button and waits until the next page replaced this
    /// one (its old `body` is gone).
    pub async fn click(&self, css: &str) {
        let body = self.find("body").await;
        self.check(css).await;
        loa_platform::testing::eventually(Duration::from_secs(20), || async {
            let old = self
                .try_call(reqwest::Method::GET, &format!("/element/{body}/name"), None)
                .await;
            match old {
                Err(e) if e["error"] == "stale element reference" => Some(()),
                _ => None,
            }
        })
        .await
        .unwrap_or_else(|_| panic!("clicking {css:?} led to no new page"));
    }

    /// The value of a cookie the browser holds for the current page.
    pub async fn cookie(&self, name: &str) -> Option<String> {
        let all = self.call(reqwest::Method::GET, "/cookie", None).await;
        all.as_array()?
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["value"].as_str().unwrap_or_default().to_owned())
    }

    /// Every cookie for the current page, as WebDriver describes them.
    pub async fn cookies(&self) -> Vec<Value> {
        self.call(reqwest::Method::GET, "/cookie", None)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Resizes the window (a phone: 390 × 844).
    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Saves a PNG screenshot as `target/console-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let data = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("a base64 PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshot folder can be made");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("the screenshot is written");
    }

    /// Ends the session and chromedriver.
    pub async fn quit(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        self.stop();
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.stop();
    }
}

fn chromedriver() -> &'static str {
    if std::path::Path::new("/usr/bin/chromedriver").exists() {
        "/usr/bin/chromedriver"
    } else {
        "chromedriver"
    }
}
