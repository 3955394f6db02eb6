//! Integration tests of intake against a real RabbitMQ (a private vhost per test):
//! what it accepts, what it refuses and how, on HTTP and on AMQP.

mod helpers;
mod ingress;
mod text;
mod times;
