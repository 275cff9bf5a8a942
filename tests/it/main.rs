//! Integration tests: one binary (one link) for the whole suite.

mod common;
mod local_sync;
