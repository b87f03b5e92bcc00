//! Black-box tests over a real socket, against the real binary or a server
//! in the test's own process (`helpers.rs` says which when), and the
//! layering rules read from the source (`architecture.rs`). One test
//! binary, so the build links once.

mod activation;
mod architecture;
mod archives;
mod artifacts;
mod backup;
mod channels;
mod client;
mod crash;
mod damage;
mod datadir;
mod downloads;
mod errors;
mod events;
mod faults;
mod helpers;
mod hostile;
mod keys;
mod limits;
mod operations;
mod packages;
mod process;
mod races;
mod retention;
mod service;
mod signatures;
