//! The HTTP routes, one module per resource.

pub mod audit;
pub mod automations;
pub mod backfills;
pub mod deployments;
pub mod events;
pub mod keys;
pub mod limits;
pub mod live;
pub mod runs;
pub mod work;
