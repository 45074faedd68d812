//! What herald's integration tests share, compiled once for all of them:
//!
//! - [`gateway`]: a real gateway bound to `127.0.0.1:0` with a pinned clock, driven over HTTP,
//!   and the snapshots and jobs the tests submit.
//! - [`https`]: an HTTPS server with a test CA of its own, for playing a provider.
//! - [`jwt`]: JWTs read and verified with ring and a public key, apart from herald's signer.
//! - [`signed`]: provider callbacks signed as providers sign them, and tracked-link tokens.
//! - [`redis`]: the shared Redis under a prefix of each test's own, and private
//!   `redis-server` processes (single or a 3-node cluster) on free ports.
//! - [`observed`]: a gateway that ran one small job, and its `/metrics` output parsed.

pub mod gateway;
pub mod https;
pub mod jwt;
pub mod loopback;
pub mod observed;
pub mod redis;
pub mod signed;
pub mod webhook_signature;

pub use gateway::*;
