//! The validation error every boundary reports to its caller.

use serde::Serialize;

/// Why an input was refused, naming the field so an integrator can fix it without
/// reading our logs. `field` is a dotted path (`applicant.phone`, `events[3].status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// Stable machine-readable code, e.g. `invalid_phone`, `missing_field`.
    pub code: &'static str,
    /// Human-readable explanation in English.
    pub message: String,
    /// Dotted path of the offending field.
    pub field: String,
}

impl ValidationError {
    /// Builds an error for `field` with a stable `code`.
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: field.into(),
        }
    }

    /// The field is absent or null although it is required.
    pub fn missing(field: impl Into<String>) -> Self {
        let field = field.into();
        let message = format!("`{field}` is required");
        Self::new(field, "missing_field", message)
    }

    /// Prefixes the field path, e.g. `status` becomes `events[3].status`.
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}
