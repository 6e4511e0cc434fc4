//! Where sessions live: the [`SessionStore`] contract and the in-memory backend.
//!
//! A backend stores session records with their expiry and takes the few steps only it
//! can take atomically (the cluster-wide cap, delete-exactly-once, attribute
//! compare-and-set, reporting expiry once). Everything else — busy counting,
//! keep-alive, cap policy, close listeners, attribute and record bounds — is the
//! layer's, done once for every backend. The Redis backend lives in its own crate,
//! written against this module's public API alone.

mod contract;
mod memory;

pub use contract::{
    Attributes, BoxError, BoxFuture, Expired, ExpiredBatch, Expiry, Replaced, SessionPage, SessionStore, Slot,
    StoreError,
};
pub use memory::MemoryStore;
