//! The engine: the state one layer's services, its manager and its streams share.

pub(crate) mod periodic;
pub(crate) mod sessions;
