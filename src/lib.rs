//! Tollgate: an API gateway on Pingora that lets a request reach an
//! upstream only with a valid credential of a subscribed consumer client.
#![forbid(unsafe_code)]

pub mod auth;
pub mod authz;
pub mod cli;
pub mod config;
pub mod console;
pub mod control;
pub mod live;
pub mod path;
pub mod portal;
pub mod proxy;
pub mod ratelimit;
pub mod runtime;
pub mod secrets;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod upgrade;
