//! Integration tests of the tracker against real PostgreSQL and RabbitMQ, each test
//! with its own database and vhost.

mod abuse;
mod consuming;
mod due_dates;
mod erasure;
mod helpers;
mod http;
mod lifecycle;
mod outbox;
mod ratings;
mod results;
mod retention;
mod search;
mod stats;
mod store;
mod timeliness;
