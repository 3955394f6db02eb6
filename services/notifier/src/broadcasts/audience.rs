//! Reading an import of subscribers, line by line, without I/O.
//!
//! `POST /v1/subscribers/import` takes `application/x-ndjson`, one JSON object per line:
//! `{"phone": "0912 345 678", "zalo_user_id": "…", "tags": ["ward:phu-thuy"],
//! "announcements": true, "name": "…"}`, or `text/csv` with a header naming its columns
//! among `phone,zalo_user_id,tags,announcements,name` (tags separated by `|`). A line
//! needs a phone or a Zalo user id; a phone is normalised as for events (`84` + 9
//! digits); tags as tag expressions read them ([`super::targeting::normalize_tag`]);
//! `announcements` (opted in to broadcasts) is `false` when absent. A line says
//! everything about its citizen: its tags and opt-in replace what was stored, so
//! importing the same file again changes nothing. A bad line is a [`Rejection`]
//! naming its line and field; it never stops the import.

use super::targeting::normalize_tag;
use loa_contracts::PhoneNumber;
use serde_json::Value;

/// Longest line read, in bytes; a longer one is rejected (field `line`).
pub const MAX_LINE_BYTES: usize = 8 * 1024;
/// Most tags on one citizen.
pub const MAX_TAGS: usize = 32;
/// Longest Zalo user id or name, in characters.
const MAX_ID_CHARS: usize = 64;
const MAX_NAME_CHARS: usize = 100;

/// One citizen as an import line describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportLine {
    /// Canonical `84…` phone.
    pub phone: Option<String>,
    /// Zalo user id for the tenant's OA.
    pub zalo_user_id: Option<String>,
    /// Normalised tags, sorted, without repeats.
    pub tags: Vec<String>,
    /// Opted in to broadcasts.
    pub announcements: bool,
    /// How a broadcast may address them (`{name}` in its parameters).
    pub name: Option<String>,
}

/// A line that could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Rejection {
    /// 1-based line number in the body (the CSV header is line 1).
    pub line: usize,
    /// The offending field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn reject(line: usize, field: &str, message: impl Into<String>) -> Rejection {
    Rejection {
        line,
        field: field.to_owned(),
        message: message.into(),
    }
}

/// The two formats an import comes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Ndjson,
    /// A CSV header, then one row per line.
    Csv(CsvColumns),
}

/// Which CSV column holds what.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CsvColumns {
    phone: Option<usize>,
    zalo_user_id: Option<usize>,
    tags: Option<usize>,
    announcements: Option<usize>,
    name: Option<usize>,
    count: usize,
}

impl CsvColumns {
    /// Reads a CSV header; the reason when it names an unknown column, a column
    /// twice, or neither `phone` nor `zalo_user_id`.
    pub fn from_header(header: &str) -> Result<Self, String> {
        let mut columns = Self::default();
        let fields = split_csv(header).ok_or("the header has an unclosed quote")?;
        columns.count = fields.len();
        for (i, field) in fields.iter().enumerate() {
            let name = field
                .trim()
                .trim_start_matches('\u{feff}')
                .to_ascii_lowercase();
            let slot = match name.as_str() {
                "phone" => &mut columns.phone,
                "zalo_user_id" => &mut columns.zalo_user_id,
                "tags" => &mut columns.tags,
                "announcements" => &mut columns.announcements,
                "name" => &mut columns.name,
                other => {
                    return Err(format!(
                        "unknown column `{other}` (phone, zalo_user_id, tags, announcements, name)"
                    ))
                }
            };
            if slot.replace(i).is_some() {
                return Err(format!("column `{name}` appears twice"));
            }
        }
        if columns.phone.is_none() && columns.zalo_user_id.is_none() {
            return Err("the header needs a `phone` or a `zalo_user_id` column".to_owned());
        }
        Ok(columns)
    }
}

/// Reads one line (`number` is its 1-based line number). `None` for a blank line.
pub fn read_line(
    format: &Format,
    number: usize,
    line: &str,
) -> Option<Result<ImportLine, Rejection>> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() {
        return None;
    }
    if line.len() > MAX_LINE_BYTES {
        return Some(Err(reject(
            number,
            "line",
            format!("a line has at most {MAX_LINE_BYTES} bytes"),
        )));
    }
    Some(match format {
        Format::Ndjson => read_json(number, line),
        Format::Csv(columns) => read_csv(columns, number, line),
    })
}

fn read_json(number: usize, line: &str) -> Result<ImportLine, Rejection> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| reject(number, "line", format!("not a JSON object: {e}")))?;
    let Value::Object(object) = value else {
        return Err(reject(number, "line", "not a JSON object"));
    };
    let mut raw = RawLine::default();
    for (key, value) in &object {
        let text = |v: &Value| match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            Value::Number(n) => Ok(Some(n.to_string())),
            _ => Err(reject(number, key, format!("`{key}` must be a string"))),
        };
        match key.as_str() {
            "phone" => raw.phone = text(value)?,
            "zalo_user_id" => raw.zalo_user_id = text(value)?,
            "name" => raw.name = text(value)?,
            "tags" => {
                raw.tags = match value {
                    Value::Null => Vec::new(),
                    Value::Array(list) => list
                        .iter()
                        .map(|t| {
                            t.as_str().map(str::to_owned).ok_or_else(|| {
                                reject(number, "tags", "`tags` must be a list of strings")
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err(reject(number, "tags", "`tags` must be a list of strings")),
                }
            }
            "announcements" => {
                raw.announcements = match value {
                    Value::Null => None,
                    Value::Bool(b) => Some(*b),
                    _ => {
                        return Err(reject(
                            number,
                            "announcements",
                            "`announcements` must be true or false",
                        ))
                    }
                }
            }
            other => {
                return Err(reject(
                    number,
                    other,
                    format!(
                        "unknown field `{other}` (phone, zalo_user_id, tags, announcements, name)"
                    ),
                ))
            }
        }
    }
    raw.finish(number)
}

fn read_csv(columns: &CsvColumns, number: usize, line: &str) -> Result<ImportLine, Rejection> {
    let fields =
        split_csv(line).ok_or_else(|| reject(number, "line", "a quoted field is not closed"))?;
    if fields.len() != columns.count {
        return Err(reject(
            number,
            "line",
            format!(
                "{} fields where the header has {}",
                fields.len(),
                columns.count
            ),
        ));
    }
    let get = |at: Option<usize>| {
        at.map(|i| fields[i].trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let announcements = match get(columns.announcements).map(|v| v.to_ascii_lowercase()) {
        None => None,
        Some(v) => match v.as_str() {
            "true" | "1" | "yes" | "có" => Some(true),
            "false" | "0" | "no" | "không" => Some(false),
            _ => {
                return Err(reject(
                    number,
                    "announcements",
                    "`announcements` must be true or false",
                ))
            }
        },
    };
    RawLine {
        phone: get(columns.phone),
        zalo_user_id: get(columns.zalo_user_id),
        tags: get(columns.tags)
            .map(|t| t.split('|').map(str::to_owned).collect())
            .unwrap_or_default(),
        announcements,
        name: get(columns.name),
    }
    .finish(number)
}

#[derive(Default)]
struct RawLine {
    phone: Option<String>,
    zalo_user_id: Option<String>,
    tags: Vec<String>,
    announcements: Option<bool>,
    name: Option<String>,
}

impl RawLine {
    fn finish(self, number: usize) -> Result<ImportLine, Rejection> {
        let blank = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let phone = match blank(self.phone) {
            None => None,
            Some(p) => Some(
                PhoneNumber::parse(&p)
                    .map_err(|why| reject(number, "phone", why))?
                    .as_str()
                    .to_owned(),
            ),
        };
        let zalo_user_id = blank(self.zalo_user_id);
        if let Some(id) = &zalo_user_id {
            if id.chars().count() > MAX_ID_CHARS
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(reject(
                    number,
                    "zalo_user_id",
                    "a Zalo user id is up to 64 letters and digits",
                ));
            }
        }
        if phone.is_none() && zalo_user_id.is_none() {
            return Err(reject(
                number,
                "phone",
                "a line needs a `phone` or a `zalo_user_id`",
            ));
        }
        let mut tags = Vec::with_capacity(self.tags.len());
        for raw in self.tags.iter().filter(|t| !t.trim().is_empty()) {
            tags.push(normalize_tag(raw).map_err(|why| reject(number, "tags", why))?);
        }
        tags.sort();
        tags.dedup();
        if tags.len() > MAX_TAGS {
            return Err(reject(
                number,
                "tags",
                format!("a citizen has at most {MAX_TAGS} tags"),
            ));
        }
        let name = blank(self.name);
        if name
            .as_ref()
            .is_some_and(|n| n.chars().count() > MAX_NAME_CHARS || n.contains(char::is_control))
        {
            return Err(reject(
                number,
                "name",
                format!(
                    "a name has at most {MAX_NAME_CHARS} characters, without control characters"
                ),
            ));
        }
        Ok(ImportLine {
            phone,
            zalo_user_id,
            tags,
            announcements: self.announcements.unwrap_or(false),
            name,
        })
    }
}

/// Splits one CSV line into fields (RFC 4180 quoting: `"a, b"`, `""` for a quote);
/// `None` when a quoted field is not closed.
fn split_csv(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return None;
    }
    fields.push(field);
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(format: &Format, line: &str) -> ImportLine {
        read_line(format, 2, line).unwrap().unwrap()
    }

    fn bad(format: &Format, line: &str) -> Rejection {
        read_line(format, 7, line).unwrap().unwrap_err()
    }

    #[test]
    fn a_json_line_is_normalised_as_events_are() {
        let line = ok(
            &Format::Ndjson,
            r#"{"phone": "0912 345 678", "tags": ["Ward:Phu-Thuy", "topic:nong-nghiep", "ward:phu-thuy"], "announcements": true}"#,
        );
        assert_eq!(
            line,
            ImportLine {
                phone: Some("84912345678".into()),
                zalo_user_id: None,
                tags: vec!["topic:nong-nghiep".into(), "ward:phu-thuy".into()],
                announcements: true,
                name: None,
            }
        );
        let line = ok(&Format::Ndjson, r#"{"zalo_user_id": 2512523625412515}"#);
        assert_eq!(line.zalo_user_id.as_deref(), Some("2512523625412515"));
        assert!(!line.announcements, "no opt-in unless the line says so");
    }

    #[test]
    fn bad_json_lines_name_their_line_and_field() {
        let cases = [
            ("{not json", "line"),
            ("[1, 2]", "line"),
            (r#"{"tags": ["a"]}"#, "phone"),
            (r#"{"phone": "12345"}"#, "phone"),
            (
                r#"{"phone": "0912345678", "announcements": "yes"}"#,
                "announcements",
            ),
            (r#"{"phone": "0912345678", "tags": "a|b"}"#, "tags"),
            (r#"{"phone": "0912345678", "tags": ["a b"]}"#, "tags"),
            (
                r#"{"phone": "0912345678", "announcement": true}"#,
                "announcement",
            ),
            (r#"{"zalo_user_id": "x'; DROP"}"#, "zalo_user_id"),
        ];
        for (line, field) in cases {
            let r = bad(&Format::Ndjson, line);
            assert_eq!((r.line, r.field.as_str()), (7, field), "{line}: {r:?}");
        }
        let long = format!(
            r#"{{"phone": "0912345678", "name": "{}"}}"#,
            "a".repeat(9000)
        );
        assert_eq!(bad(&Format::Ndjson, &long).field, "line");
        assert!(read_line(&Format::Ndjson, 3, "  \r").is_none());
    }

    #[test]
    fn a_csv_import_reads_its_columns_from_the_header() {
        let columns = CsvColumns::from_header("phone,zalo_user_id,tags,announcements").unwrap();
        let csv = Format::Csv(columns);
        let line = ok(&csv, "0912 345 678,,ward:phu-thuy|topic:thuy-san,true\r");
        assert_eq!(line.phone.as_deref(), Some("84912345678"));
        assert_eq!(line.tags, ["topic:thuy-san", "ward:phu-thuy"]);
        assert!(line.announcements);
        let line = ok(&csv, r#""+84 912 345 679","u-1","",false"#);
        assert_eq!(
            (line.phone.as_deref(), line.zalo_user_id.as_deref()),
            (Some("84912345679"), Some("u-1"))
        );
        assert_eq!(bad(&csv, "0912345678,,a").field, "line");
        assert_eq!(bad(&csv, "0912345678,,a,maybe").field, "announcements");
        assert_eq!(bad(&csv, r#""0912345678,,a,true"#).field, "line");

        let reordered = Format::Csv(CsvColumns::from_header("name,phone").unwrap());
        let line = ok(&reordered, r#""Nguyễn Văn ""Tư""",0912345678"#);
        assert_eq!(line.name.as_deref(), Some(r#"Nguyễn Văn "Tư""#));
    }

    #[test]
    fn a_csv_header_must_name_known_columns_and_a_recipient() {
        assert!(CsvColumns::from_header("\u{feff}phone").is_ok());
        for header in ["tags,announcements", "phone,email", "phone,phone"] {
            assert!(CsvColumns::from_header(header).is_err(), "{header}");
        }
    }
}
