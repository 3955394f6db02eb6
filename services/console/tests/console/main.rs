//! The console's tables on a real PostgreSQL (a private database per test): accounts
//! and passwords, sessions, lockout, and the append-only audit log.

mod store;
