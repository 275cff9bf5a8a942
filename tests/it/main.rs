//! Integration tests: one binary (one link) for the whole suite.

mod common;
mod config;
mod crash_loop;
mod docs;
mod doctor;
mod durability;
mod failing_well;
mod faults;
mod front_door;
mod ftp_encoding;
mod ftp_sync;
mod fuzz_invariants;
#[path = "../support/harness/mod.rs"]
mod harness;
mod hostile_ftp;
mod hostile_sftp;
mod ingest;
mod links;
mod listing_capture;
mod local_sync;
mod owners;
mod perms;
mod proxy;
mod recursive_list;
mod round_trips;
mod safety;
mod screen;
mod secrets;
mod segmented;
mod servers;
mod sftp_auth;
mod sftp_sync;
mod shard;
mod trust_state;
mod wan;
#[path = "../support/wanem.rs"]
mod wanem;
