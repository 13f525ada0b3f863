//! Integration tests: one crate (one binary linking Pingora), one module
//! per capability. Every test starts real gateways and upstreams on
//! 127.0.0.1 through `harness`.

mod harness;

mod admin_api;
mod auth_api_key;
mod auth_jwt;
mod cli_admin;
mod cli_config;
mod cluster;
mod console;
mod deploy;
mod edge;
mod forwarding;
mod http_hygiene;
mod interop;
mod key_lifecycle;
mod lifecycle;
mod oauth;
mod openapi;
mod operations;
mod paths;
mod portal;
mod ratelimit;
mod routing;
mod tls;
mod upstreams;
mod websocket;
