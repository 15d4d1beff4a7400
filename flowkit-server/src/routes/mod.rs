//! The HTTP routes, one module per resource.

pub mod events;
pub mod runs;
