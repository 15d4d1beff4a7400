//! The flowkit server's HTTP contract, as data: what a serving program registers
//! ([`DeploymentSpec`]), when runs are due ([`Schedule`]), and the messages of orchestration
//! (triggering runs, workers claiming them, heartbeats, cancels; [`work`]).
//!
//! The runtime (`flowkit`), the server (`flowkit-server`) and the `flowkit` command line share
//! these types, so the three cannot disagree about a field.
//!
//! ```
//! use flowkit_api::DeploymentSpec;
//! let spec: DeploymentSpec =
//!     serde_json::from_str(r#"{"name": "nightly", "flow": "etl", "schedules": [{"every": "1h"}]}"#)
//!         .unwrap();
//! assert_eq!(spec.queue, "default");
//! assert_eq!(spec.describe().unwrap(), ["every 1h"]);
//! ```

pub mod access;
pub mod automation;
mod deployment;
pub mod limits;
mod schedule;
pub mod states;
pub mod work;

pub use deployment::{DEFAULT_QUEUE, DeploymentSpec, ScheduleSpec};
pub use schedule::{Interval, MAX_CATCHUP, Schedule, ScheduleError, intervals, missed, next_due};
