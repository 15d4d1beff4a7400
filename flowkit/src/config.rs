//! Process-wide setup: the global event bus, logging and Ctrl-C, from the environment.

use std::sync::OnceLock;

use crate::sink::{ConsoleSink, EventSink, HttpSink};
use crate::{EventBus, logging};

pub(crate) static GLOBAL: OnceLock<EventBus> = OnceLock::new();

/// The bus used by runs that were not given one: the one [`init`] or [`Config::init`]
/// installed, else one built from the environment on first use.
pub fn global_bus() -> &'static EventBus {
    GLOBAL.get_or_init(|| Config::from_env().build_bus())
}

/// Why [`Config::init`] did nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// The global bus was already set (by an earlier `init`, or by a run that used it).
    #[error("flowkit is already initialized: the global event bus was set before")]
    AlreadyInitialized,
}

/// How flowkit reports runs in this process: which sinks, whether it installs a `tracing`
/// subscriber, whether Ctrl-C cancels flow runs.
///
/// Environment variables (read by [`Config::from_env`]): `FLOWKIT_CONSOLE=off` silences the
/// console progress view; `FLOWKIT_API_URL` (and `FLOWKIT_API_KEY`) stream events to a flowkit
/// server; `RUST_LOG` sets the log filter (default `info`). Builder calls override them.
///
/// ```
/// use flowkit::{Config, MemorySink};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let memory = MemorySink::new();
/// Config::from_env().console(false).sink(memory.clone()).init().expect("first init");
/// # }
/// ```
#[must_use = "a Config does nothing until .init()"]
pub struct Config {
    console: bool,
    logging: bool,
    ctrl_c: bool,
    sinks: Vec<Box<dyn EventSink>>,
    api_url: Option<String>,
    api_key: Option<String>,
    results: Option<std::sync::Arc<dyn crate::ResultStore>>,
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

impl Config {
    /// The defaults, ignoring the environment: console on, logging on, Ctrl-C handled.
    pub fn new() -> Self {
        Config {
            console: true,
            logging: true,
            ctrl_c: true,
            sinks: Vec::new(),
            api_url: None,
            api_key: None,
            results: None,
        }
    }

    /// The defaults, then the environment (`FLOWKIT_CONSOLE`).
    pub fn from_env() -> Self {
        let mut config = Self::new();
        if let Ok(value) = std::env::var("FLOWKIT_CONSOLE") {
            config.console = !matches!(
                value.trim().to_ascii_lowercase().as_str(),
                "0" | "off" | "false" | "no"
            );
        }
        config.api_url = std::env::var("FLOWKIT_API_URL")
            .ok()
            .filter(|u| !u.trim().is_empty());
        config.api_key = std::env::var("FLOWKIT_API_KEY")
            .ok()
            .filter(|k| !k.is_empty());
        config
    }

    /// Streams events to the flowkit server at `url` (`FLOWKIT_API_URL`).
    pub fn api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = Some(url.into());
        self
    }

    /// The server's API key (`FLOWKIT_API_KEY`).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Keeps persisted results in this directory (a [`LocalStore`](crate::LocalStore)) instead
    /// of `FLOWKIT_RESULTS_DIR` or `~/.local/share/flowkit/results`.
    ///
    /// ```no_run
    /// flowkit::Config::from_env().results_dir("/var/lib/etl/results").init().ok();
    /// ```
    pub fn results_dir(self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.result_store(crate::LocalStore::new(dir))
    }

    /// Keeps persisted results in `store`.
    pub fn result_store(mut self, store: impl crate::ResultStore) -> Self {
        self.results = Some(std::sync::Arc::new(store));
        self
    }

    /// Shows (or hides) the console progress view on stderr.
    pub fn console(mut self, on: bool) -> Self {
        self.console = on;
        self
    }

    /// Installs (or not) a `tracing` subscriber that honours `RUST_LOG` and sends logs emitted
    /// inside runs to the sinks.
    pub fn logging(mut self, on: bool) -> Self {
        self.logging = on;
        self
    }

    /// Lets (or not) Ctrl-C cancel the flow runs in progress.
    pub fn ctrl_c(mut self, on: bool) -> Self {
        self.ctrl_c = on;
        self
    }

    /// Adds a sink.
    pub fn sink(mut self, sink: impl EventSink) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }

    fn build_bus(self) -> EventBus {
        let mut builder = EventBus::builder();
        if self.console {
            let mut console = ConsoleSink::stderr();
            if let Some(url) = &self.api_url {
                console = console.dashboard(url.clone());
            }
            builder = builder.sink(console);
        }
        if let Some(url) = self.api_url {
            let mut http = HttpSink::builder(url);
            if let Some(key) = self.api_key {
                http = http.api_key(key);
            }
            builder = builder.sink(http.build());
        }
        for sink in self.sinks {
            builder = builder.boxed_sink(sink);
        }
        let bus = builder.build();
        if bus.is_enabled() {
            crate::exit::deliver_at_exit();
        }
        bus
    }

    /// Installs this configuration for the process.
    ///
    /// If the global bus was already set (by an earlier `init`, or by a run that needed it
    /// before `init` was called), logging and Ctrl-C are still set up, but the sinks are not
    /// changed, and this says so.
    pub fn init(mut self) -> Result<(), InitError> {
        let (logging, ctrl_c, console) = (self.logging, self.ctrl_c, self.console);
        let store_set = match self.results.take() {
            Some(store) => crate::results::set_global_store(store),
            None => true,
        };
        crate::limits::remote::configure(self.api_url.as_deref(), self.api_key.clone());
        let set = GLOBAL.get().is_none() && GLOBAL.set(self.build_bus()).is_ok();
        static INSTALLED: std::sync::Once = std::sync::Once::new();
        INSTALLED.call_once(|| {
            if logging {
                logging::install(console);
            }
            if ctrl_c {
                crate::cancel::listen_for_ctrl_c();
            }
        });
        if set && store_set {
            Ok(())
        } else {
            Err(InitError::AlreadyInitialized)
        }
    }
}

/// Sets flowkit up from the environment: the console progress view (unless
/// `FLOWKIT_CONSOLE=off`), a `tracing` subscriber honouring `RUST_LOG`, and Ctrl-C cancelling the
/// flow runs in progress. Calling it again does nothing.
///
/// ```no_run
/// #[tokio::main]
/// async fn main() {
///     flowkit::init();
/// }
/// ```
pub fn init() {
    let _ = Config::from_env().init();
}

/// Waits (at most 5 s of real time) until the events emitted so far by runs on the global bus
/// have reached its sinks and been delivered. Top-level flow runs only hand their events off
/// when they end (to the HTTP sink's spool, which goes on delivering them), and the process
/// waits for delivery (at most 5 s) when it exits. Under tokio's paused clock it takes no
/// virtual time (see [`EventBus::flush`]).
pub async fn flush() {
    if let Some(bus) = GLOBAL.get() {
        bus.flush_timeout(std::time::Duration::from_secs(5)).await;
    }
}
