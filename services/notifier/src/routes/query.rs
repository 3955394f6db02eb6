//! The query parameters of the admin API's listings (`?limit=&after_id=&q=`), read one
//! way by every handler: a query that cannot be read, a parameter the listing does not
//! know, or a value out of its rules is `400 invalid_query` whose `field` names the
//! parameter, never a `500` and never a filter silently ignored.

use axum::{
    extract::{rejection::QueryRejection, Query},
    http::StatusCode,
};
use loa_platform::http::ApiError;
use std::{collections::HashMap, ops::RangeInclusive};

/// `400 invalid_query` naming `field`.
pub(crate) fn invalid_query(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message).with_field(field)
}

/// A request's query parameters, each read by its rule.
#[derive(Debug, Default)]
pub(crate) struct QueryParams(HashMap<String, String>);

impl From<HashMap<String, String>> for QueryParams {
    fn from(params: HashMap<String, String>) -> Self {
        Self(params)
    }
}

impl QueryParams {
    /// The parameters of a request; a query axum cannot read is refused naming `query`.
    pub(crate) fn read(
        query: Result<Query<HashMap<String, String>>, QueryRejection>,
    ) -> Result<Self, ApiError> {
        let Query(params) = query.map_err(|e| invalid_query("query", e.body_text()))?;
        Ok(Self(params))
    }

    /// Refuses a parameter that is not one of `known`, so that a misspelt filter does
    /// not list everything.
    pub(crate) fn allow_only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().filter(|k| !known.contains(&k.as_str())).min() {
            None => Ok(()),
            Some(unknown) => Err(invalid_query(
                unknown,
                format!(
                    "unknown query parameter `{unknown}`: one of {}",
                    known.join(", ")
                ),
            )),
        }
    }

    /// A parameter's value without surrounding white space (possibly empty).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim())
    }

    /// A parameter's value without surrounding white space; an empty one is absent.
    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// An integer parameter in `range`; any other value is refused with `rule`.
    pub(crate) fn int(
        &self,
        name: &str,
        range: RangeInclusive<i64>,
        rule: &str,
    ) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| invalid_query(name, rule))
            })
            .transpose()
    }

    /// The page size, `limit`: 1 to `max`, `default` when absent.
    pub(crate) fn limit(&self, default: i64, max: i64) -> Result<i64, ApiError> {
        let rule = format!("`limit` is an integer from 1 to {max}");
        Ok(self.int("limit", 1..=max, &rule)?.unwrap_or(default))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> QueryParams {
        QueryParams::from(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<HashMap<_, _>>(),
        )
    }

    fn field(error: ApiError) -> Option<String> {
        assert_eq!(
            (error.status, error.code),
            (StatusCode::BAD_REQUEST, "invalid_query")
        );
        error.field
    }

    #[test]
    fn a_limit_is_read_trimmed_within_its_bounds_and_defaults_when_absent() {
        assert_eq!(params(&[("limit", " 20 ")]).limit(50, 200).unwrap(), 20);
        assert_eq!(params(&[]).limit(50, 200).unwrap(), 50);
        for bad in ["0", "201", "x", "", "1.5"] {
            let error = params(&[("limit", bad)]).limit(50, 200).unwrap_err();
            assert_eq!(field(error).as_deref(), Some("limit"), "{bad:?}");
        }
    }

    #[test]
    fn an_unknown_parameter_is_refused_by_its_name() {
        let query = params(&[("limit", "5"), ("tga", "x")]);
        assert!(query.allow_only(&["limit", "tag"]).is_err());
        assert_eq!(
            field(query.allow_only(&["limit", "tag"]).unwrap_err()).as_deref(),
            Some("tga")
        );
        assert!(query.allow_only(&["limit", "tga"]).is_ok());
    }

    #[test]
    fn an_empty_text_parameter_is_absent() {
        let query = params(&[("q", "  "), ("tag", " ward ")]);
        assert_eq!(query.text("q"), None);
        assert_eq!(query.get("q"), Some(""));
        assert_eq!(query.text("tag"), Some("ward"));
    }
}
