//! `orch serve`: schedules, the HTTP API, webhooks, SSE, durability across `kill -9`, the
//! graceful stop. The real binary, a real SQLite store, loopback HTTP.

mod api;
mod durability;
mod harness;
mod schedules;
mod web;
mod workers;
