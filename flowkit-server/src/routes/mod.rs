//! The HTTP routes, one module per resource.

pub mod events;
pub mod live;
pub mod runs;
