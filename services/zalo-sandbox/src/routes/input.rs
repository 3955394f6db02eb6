//! Typed reading of `/_sandbox/…` control bodies that names the offending field in
//! every refusal (422 `invalid_field`), rejects unknown fields (a typo must not be
//! silently ignored) and treats `null` as "not given".

use axum::http::StatusCode;
use loa_platform::http::ApiError;
use serde_json::{Map, Value};

/// The fields of one JSON object body.
#[derive(Debug)]
pub struct Fields {
    map: Map<String, Value>,
    prefix: String,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_field(field)
}

impl Fields {
    /// Accepts an object whose keys are all in `allowed`; `prefix` is prepended to field
    /// names in errors (`[2]` for the third fault of an array).
    pub fn new(body: Value, allowed: &[&str], prefix: &str) -> Result<Self, ApiError> {
        let Value::Object(map) = body else {
            return Err(invalid(
                if prefix.is_empty() { "body" } else { prefix },
                "expected a JSON object",
            ));
        };
        let fields = Self {
            map,
            prefix: prefix.to_owned(),
        };
        if let Some(unknown) = fields.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            let name = fields.name(unknown);
            return Err(invalid(
                &name,
                format!(
                    "unknown field `{unknown}`; expected one of: {}",
                    allowed.join(", ")
                ),
            ));
        }
        Ok(fields)
    }

    /// The field's name in errors.
    pub fn name(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// Whether the key was written (even as `null`).
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// An error about `key`.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ApiError {
        invalid(&self.name(key), message)
    }

    /// A string field.
    pub fn str(&self, key: &str) -> Result<Option<String>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.error(key, format!("`{key}` must be a string"))),
        }
    }

    /// A number field.
    pub fn f64(&self, key: &str) -> Result<Option<f64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or_else(|| self.error(key, format!("`{key}` must be a number"))),
        }
    }

    /// A probability field (0..=1).
    pub fn probability(&self, key: &str) -> Result<Option<f64>, ApiError> {
        match self.f64(key)? {
            Some(p) if !(0.0..=1.0).contains(&p) => {
                Err(self.error(key, format!("`{key}` must be between 0 and 1")))
            }
            p => Ok(p),
        }
    }

    /// An integer field.
    pub fn i64(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.error(key, format!("`{key}` must be an integer"))),
        }
    }

    /// A non-negative integer field.
    pub fn u64(&self, key: &str) -> Result<Option<u64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.error(key, format!("`{key}` must be a non-negative integer"))),
        }
    }

    /// A list of strings.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, ApiError> {
        let wrong = || self.error(key, format!("`{key}` must be a list of strings"));
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(wrong))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(wrong()),
        }
    }

    /// A boolean field.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.error(key, format!("`{key}` must be true or false"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_types_and_unknown_fields_name_the_field() {
        let f = Fields::new(
            json!({"rate": "half", "count": -1, "x": null}),
            &["rate", "count", "x"],
            "",
        )
        .unwrap();
        assert_eq!(f.f64("rate").unwrap_err().field.as_deref(), Some("rate"));
        assert_eq!(f.u64("count").unwrap_err().field.as_deref(), Some("count"));
        assert_eq!(f.str("x").unwrap(), None);
        assert!(f.has("x"));
        let e = Fields::new(json!({"rat": 1}), &["rate"], "[1]").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("[1].rat"));
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
}
