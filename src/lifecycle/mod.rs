//! Session lifecycle over any store: what the layer does with a [`SessionStore`]
//! (busy counting, keep-alive, cap policy, bounded attributes, close listeners), the
//! [`Session`] handle the inner service sees.
//!
//! [`SessionStore`]: crate::store::SessionStore

pub(crate) mod client_state;
mod handle;
mod policy;
pub(crate) mod sessions;

pub use handle::{Session, SessionError};
pub use policy::AtCapacity;
