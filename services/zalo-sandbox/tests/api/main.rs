//! Integration tests: real HTTP against a sandbox bound to 127.0.0.1:0, no Postgres or
//! RabbitMQ needed.

mod faults;
mod helpers;
mod limits;
mod oa;
mod oauth;
mod throughput;
mod webhooks;
mod zns;
