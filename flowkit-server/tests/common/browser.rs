//! Headless Chromium (Debian's) driven over WebDriver by ChromeDriver, one per test, with a
//! fresh profile. Installs both with the project's script if they are missing.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Once;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::{Server, TempDir, free_port};

/// Where screenshots go: `target/tmp/dashboard-screenshots/`.
pub fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot folder");
    dir
}

fn ensure_installed() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/install-test-deps.sh"
        );
        let status = std::process::Command::new("bash")
            .arg(script)
            .status()
            .expect("bash runs");
        assert!(
            status.success(),
            "could not install Chromium and ChromeDriver; run scripts/install-test-deps.sh as root"
        );
    });
}

pub struct Browser {
    pub client: Client,
    _driver: Child,
    _profile: TempDir,
}

impl Browser {
    /// A new headless Chromium at 1400x1000.
    pub async fn start() -> Browser {
        ensure_installed();
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let profile = TempDir::new("chromium-profile");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(error) if Instant::now() > deadline => {
                    panic!("no WebDriver session with Chromium: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
    }

    /// Opens the dashboard of `server` at `hash` (`/runs`, `/deployments`, …).
    pub async fn open(&self, server: &Server, hash: &str) {
        self.goto(&format!("{}/#{hash}", server.url)).await;
    }

    /// Waits for the dashboard's key prompt, and answers it with `key`.
    pub async fn enter_key(&self, key: &str) {
        self.wait_until(
            "the key prompt",
            "document.getElementById('key-dialog').open",
        )
        .await;
        self.type_into("#key-input", key).await;
        self.click("#key-form button[type=submit]").await;
    }

    /// Waits (like `wait_until`) until the element matching `css` is shown: there, not
    /// hidden, and laid out.
    pub async fn wait_shown(&self, what: &str, css: &str) {
        let expression = format!(
            "(() => {{ const b = document.querySelector({css:?}); \
             return b && !b.hidden && b.offsetParent !== null; }})()"
        );
        self.wait_until(what, &expression).await;
    }

    /// On a run's page: presses Cancel, confirms, and returns the state the server answered.
    pub async fn cancel_run(&self) -> Value {
        self.wait_shown("the cancel button", "[data-testid=cancel-run]")
            .await;
        self.click("[data-testid=cancel-run]").await;
        self.click("[data-testid=cancel-confirm]").await;
        self.wait_until(
            "the cancel answer",
            "document.querySelector('[data-testid=cancel-answer]')?.dataset.state",
        )
        .await
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value; a
    /// returned promise is awaited.
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits (up to 30 s) until `expression` is truthy in the page, and returns its value.
    /// On a timeout, saves a screenshot named `failed-<what>` and fails with `what`.
    pub async fn wait_until(&self, what: &str, expression: &str) -> Value {
        let script = format!("return ({expression});");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self
                .client
                .execute(&script, vec![])
                .await
                .unwrap_or(Value::Null);
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                self.screenshot(&format!("failed-{}", what.replace(' ', "-")))
                    .await;
                panic!("timed out waiting for {what} ({expression})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (like `wait_until`) until exactly `n` elements match `css`.
    pub async fn wait_for_count(&self, what: &str, css: &str, n: usize) {
        let expression = format!("document.querySelectorAll({css:?}).length === {n}");
        self.wait_until(what, &expression).await;
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .text()
            .await
            .expect("its text")
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Clicks the element matching `css` from the page's side: the element is looked up at the
    /// moment of the click, so a re-render in between cannot leave a stale handle.
    pub async fn click_js(&self, css: &str) {
        let clicked = self
            .eval(
                "const el = document.querySelector(arguments[0]);\
                 if (!el) return false;\
                 el.dispatchEvent(new MouseEvent('click', { bubbles: true, cancelable: true }));\
                 return true;",
                vec![Value::String(css.to_string())],
            )
            .await;
        assert_eq!(clicked, Value::Bool(true), "no {css} to click");
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    /// Saves a PNG of the window as `<name>.png` among the test artifacts.
    pub async fn screenshot(&self, name: &str) {
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(artifacts().join(format!("{name}.png")), png);
        }
    }

    /// Resizes the window so the whole page fits, then saves a screenshot.
    pub async fn full_page_screenshot(&self, name: &str) {
        let height = self
            .eval("return document.documentElement.scrollHeight;", vec![])
            .await
            .as_u64()
            .unwrap_or(1000)
            .clamp(600, 4000);
        let _ = self.client.set_window_size(1400, height as u32 + 90).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.screenshot(name).await;
        let _ = self.client.set_window_size(1400, 1000).await;
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
