//! End-to-end tests of the whole pipeline on real RabbitMQ, real PostgreSQL and the Zalo
//! sandbox: intake → tracker → notifier → sandbox, in one process and as separate
//! processes. Every test gets its own database and vhost.

mod helpers;
mod helpers_browser;
mod helpers_console;
mod helpers_process;
mod helpers_webdriver;

mod broadcasts;
mod chat;
mod console;
mod console_messages;
mod console_operations;
mod console_speed;
mod dead_letters_cli;
mod faults;
mod ingress;
mod openapi;
mod pipeline;
mod processes;
mod ratings;
mod schema;
mod security;
mod subjects;
mod tenants_reload;
mod traces;
