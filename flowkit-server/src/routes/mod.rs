//! The HTTP routes, one module per resource.

pub mod backfills;
pub mod deployments;
pub mod events;
pub mod live;
pub mod runs;
pub mod work;
