//! `POST /v2.0/oa/message` with a target: the OA's broadcast of an Article to its
//! followers, chosen by age, gender, location, city and platform (one call reaches a
//! whole province, instead of one message per citizen).
//!
//! Zalo's own SDKs disagree on the target's encoding: the Java SDK
//! (`SendBroadcastMessage.java`) sends integers and `platform`, the .NET SDK
//! comma-joined strings and `platforms`. The sandbox accepts both (one value per
//! field: an integer, a string of comma-joined integers, or an array of integers) and
//! records the target normalised, with the encoding it came in; `GET
//! /_sandbox/broadcasts` lists them. The v2.0 path no longer sends 1:1 messages: a
//! body naming a `recipient.user_id` answers `-240`, as Zalo does.

use super::{access_token_header, parse_object, Body};
use crate::{
    sandbox::{new_msg_id, Sandbox},
    zalo::{codes, success, ZaloError},
};
use axum::{
    body::Bytes,
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Zalo's answer to a 1:1 message on the v2.0 path.
const MESSAGE_V2_SHUT_DOWN: i64 = -240;

/// A broadcast's audience as Zalo reads it, whichever encoding it came in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Target {
    /// Age groups (Zalo's codes).
    pub ages: Vec<u32>,
    /// Gender code.
    pub gender: Vec<u32>,
    /// Regions (Zalo's codes).
    pub locations: Vec<u32>,
    /// Provinces and cities (Zalo's codes).
    pub cities: Vec<u32>,
    /// Platforms (1 iOS, 2 Android, 3 web).
    pub platforms: Vec<u32>,
    /// `java` (integers, `platform`), `dotnet` (comma-joined strings, `platforms`),
    /// or `none` (no field set).
    pub encoding: &'static str,
}

/// One accepted broadcast, as `GET /_sandbox/broadcasts` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedBroadcast {
    /// Zalo's id of the broadcast.
    pub message_id: String,
    /// The OA it went out from.
    pub oa_id: String,
    /// The Article sent.
    pub attachment_id: String,
    /// Who it was for.
    pub target: Target,
}

/// Reads `recipient.target`: each field an integer, a comma-joined string of
/// integers, or an array of integers; `platform` or `platforms`, not both.
pub fn parse_target(target: &Map<String, Value>) -> Result<Target, ZaloError> {
    let invalid =
        |field: &str| ZaloError::new(codes::OA_INVALID_FIELD, format!("{field} is invalid!"));
    let mut java = false;
    let mut dotnet = false;
    let mut read = |field: &str| -> Result<Vec<u32>, ZaloError> {
        let int = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
        match target.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Number(n)) => {
                java = true;
                int(&Value::Number(n.clone()))
                    .map(|n| vec![n])
                    .ok_or_else(|| invalid(field))
            }
            Some(Value::Array(items)) => {
                java = true;
                items
                    .iter()
                    .map(|v| int(v).ok_or_else(|| invalid(field)))
                    .collect()
            }
            Some(Value::String(s)) => {
                dotnet = true;
                s.split(',')
                    .map(|p| p.trim().parse::<u32>().map_err(|_| invalid(field)))
                    .collect()
            }
            Some(_) => Err(invalid(field)),
        }
    };
    if target.contains_key("platform") && target.contains_key("platforms") {
        return Err(ZaloError::new(
            codes::OA_INVALID_FIELD,
            "platform and platforms name the same thing: send one",
        ));
    }
    let ages = read("ages")?;
    let gender = read("gender")?;
    let locations = read("locations")?;
    let cities = read("cities")?;
    let platforms = if target.contains_key("platforms") {
        read("platforms")?
    } else {
        read("platform")?
    };
    let encoding = match (java, dotnet) {
        (false, false) => "none",
        (true, false) => "java",
        (false, true) => "dotnet",
        (true, true) => "mixed",
    };
    Ok(Target {
        ages,
        gender,
        locations,
        cities,
        platforms,
        encoding,
    })
}

/// The Article of `message.attachment.payload.elements[0]` (`media_type: article`).
fn article_of(message: &Value) -> Result<String, ZaloError> {
    let element = &message["attachment"]["payload"]["elements"][0];
    match (
        element["media_type"].as_str(),
        element["attachment_id"].as_str(),
    ) {
        (Some("article"), Some(id)) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => Err(ZaloError::new(
            codes::OA_INVALID_FIELD,
            "message.attachment.payload.elements[0] must be an article with an attachment_id",
        )),
    }
}

/// `POST /v2.0/oa/message`: a broadcast of an Article to the OA's followers.
pub async fn send_broadcast(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let app = match sandbox.tokens.check_access(
        &sandbox.apps,
        access_token_header(&headers),
        sandbox.clock.now_ms(),
    ) {
        Ok(app) => app,
        Err(problem) => return Json(problem.zalo_error(true).body()).into_response(),
    };
    let Body::Object(obj) = parse_object(&body) else {
        return Json(ZaloError::new(codes::OA_INVALID_FIELD, "body is invalid!").body())
            .into_response();
    };
    let recipient = obj.get("recipient").cloned().unwrap_or(Value::Null);
    if recipient.get("user_id").is_some() {
        return Json(ZaloError::code(MESSAGE_V2_SHUT_DOWN).body()).into_response();
    }
    let parsed = match recipient.get("target").and_then(Value::as_object) {
        Some(target) => parse_target(target),
        None => Err(ZaloError::new(
            codes::OA_INVALID_FIELD,
            "recipient.target is required",
        )),
    }
    .and_then(|target| {
        Ok((
            target,
            article_of(obj.get("message").unwrap_or(&Value::Null))?,
        ))
    });
    let (target, attachment_id) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return Json(e.body()).into_response(),
    };
    let recorded = RecordedBroadcast {
        message_id: new_msg_id(),
        oa_id: app.oa_id.clone(),
        attachment_id,
        target,
    };
    let message_id = recorded.message_id.clone();
    sandbox.record_broadcast(recorded);
    Json(success(json!({"message_id": message_id}))).into_response()
}

/// `GET /_sandbox/broadcasts`: the broadcasts accepted so far, oldest first.
pub async fn list(State(sandbox): State<Arc<Sandbox>>) -> Json<Value> {
    Json(json!({"broadcasts": sandbox.broadcasts()}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(v: Value) -> Result<Target, ZaloError> {
        parse_target(v.as_object().unwrap())
    }

    #[test]
    fn the_java_and_the_dotnet_encodings_of_a_target_read_the_same() {
        let java = target(json!({"cities": 4, "platform": 2})).unwrap();
        let dotnet = target(json!({"cities": "4", "platforms": "2"})).unwrap();
        assert_eq!(
            (java.cities.clone(), java.platforms.clone()),
            (vec![4], vec![2])
        );
        assert_eq!(
            (dotnet.cities, dotnet.platforms),
            (java.cities, java.platforms)
        );
        assert_eq!((java.encoding, dotnet.encoding), ("java", "dotnet"));
        let several = target(json!({"cities": "4,9", "ages": [2, 3]})).unwrap();
        assert_eq!((several.cities, several.ages), (vec![4, 9], vec![2, 3]));
    }

    #[test]
    fn a_bad_target_names_its_field() {
        let bad = target(json!({"cities": "4,x"})).unwrap_err();
        assert!(
            bad.body()["message"].as_str().unwrap().contains("cities"),
            "{}",
            bad.body()
        );
        assert!(target(json!({"platform": 1, "platforms": "1"})).is_err());
        assert!(target(json!({"gender": true})).is_err());
    }
}
