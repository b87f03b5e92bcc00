//! Black-box tests: every test starts the real `packd` binary and talks HTTP
//! to it over a real socket. One test binary, so the build links once.

mod activation;
mod archives;
mod artifacts;
mod backup;
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
mod service;
