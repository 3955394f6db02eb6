//! The national dossier status codes (TrangThaiHoSo) reported to the National Public
//! Service Portal, used as-is by provincial one-stop systems.

use serde::{Deserialize, Serialize};

/// A dossier status, 1..10. On the wire it is the number; upstream systems may also send
/// its English name (`"received"`, `"result_ready"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DossierStatus {
    /// 1 Mới đăng ký: submitted online, waiting to be received.
    Submitted = 1,
    /// 2 Được tiếp nhận: accepted by the one-stop desk (the receipt).
    Received = 2,
    /// 3 Không được tiếp nhận: refused at intake.
    Refused = 3,
    /// 4 Đang xử lý: being processed.
    Processing = 4,
    /// 5 Yêu cầu bổ sung giấy tờ: supplement requested.
    SupplementRequested = 5,
    /// 6 Yêu cầu thực hiện nghĩa vụ tài chính: fees or taxes due.
    PaymentRequested = 6,
    /// 7 Công dân yêu cầu rút hồ sơ: withdrawn by the applicant.
    Withdrawn = 7,
    /// 8 Dừng xử lý: processing stopped.
    Stopped = 8,
    /// 9 Đã xử lý xong: result ready at the desk.
    ResultReady = 9,
    /// 10 Đã trả kết quả: result handed over.
    ResultReturned = 10,
}

impl DossierStatus {
    /// Every status, in code order.
    pub const ALL: [DossierStatus; 10] = [
        Self::Submitted,
        Self::Received,
        Self::Refused,
        Self::Processing,
        Self::SupplementRequested,
        Self::PaymentRequested,
        Self::Withdrawn,
        Self::Stopped,
        Self::ResultReady,
        Self::ResultReturned,
    ];

    /// The national code, 1..10.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Looks a status up by its national code.
    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|s| i64::from(s.code()) == code)
    }

    /// The English snake_case name accepted from upstream and used in routing keys.
    pub fn name(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::Received => "received",
            Self::Refused => "refused",
            Self::Processing => "processing",
            Self::SupplementRequested => "supplement_requested",
            Self::PaymentRequested => "payment_requested",
            Self::Withdrawn => "withdrawn",
            Self::Stopped => "stopped",
            Self::ResultReady => "result_ready",
            Self::ResultReturned => "result_returned",
        }
    }

    /// Looks a status up by name (case-insensitive), or by its code written as a string.
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        if let Ok(code) = name.parse::<i64>() {
            return Self::from_code(code);
        }
        let lower = name.to_ascii_lowercase();
        Self::ALL.into_iter().find(|s| s.name() == lower)
    }

    /// The official catalogue label, for the console and the APIs (citizens read
    /// [`Self::citizen_vi`]).
    pub fn label_vi(self) -> &'static str {
        match self {
            Self::Submitted => "Mới đăng ký",
            Self::Received => "Được tiếp nhận",
            Self::Refused => "Không được tiếp nhận",
            Self::Processing => "Đang xử lý",
            Self::SupplementRequested => "Yêu cầu bổ sung giấy tờ",
            Self::PaymentRequested => "Yêu cầu thực hiện nghĩa vụ tài chính",
            Self::Withdrawn => "Công dân yêu cầu rút hồ sơ",
            Self::Stopped => "Dừng xử lý",
            Self::ResultReady => "Đã xử lý xong",
            Self::ResultReturned => "Đã trả kết quả",
        }
    }

    /// What the status means to the citizen, in their words (the lookup page, chat
    /// replies): "Hồ sơ đã được rút theo đề nghị của ông/bà", not the catalogue's
    /// "Công dân yêu cầu rút hồ sơ".
    pub fn citizen_vi(self) -> &'static str {
        match self {
            Self::Submitted => "Hồ sơ đã được đăng ký, đang chờ tiếp nhận",
            Self::Received => "Hồ sơ đã được tiếp nhận",
            Self::Refused => "Hồ sơ không được tiếp nhận",
            Self::Processing => "Hồ sơ đang được giải quyết",
            Self::SupplementRequested => "Hồ sơ cần bổ sung giấy tờ",
            Self::PaymentRequested => "Hồ sơ chờ ông/bà nộp phí, lệ phí",
            Self::Withdrawn => "Hồ sơ đã được rút theo đề nghị của ông/bà",
            Self::Stopped => "Hồ sơ đã dừng giải quyết",
            Self::ResultReady => "Đã có kết quả, mời ông/bà đến nhận",
            Self::ResultReturned => "Đã trả kết quả",
        }
    }

    /// [`Self::citizen_vi`] for an applicant of `kind`: an organisation is addressed
    /// as "Quý tổ chức" ([`crate::templates::addressee`]), never "ông/bà".
    pub fn citizen_vi_for(self, kind: crate::ApplicantKind) -> &'static str {
        match (self, kind) {
            (_, crate::ApplicantKind::Person) => self.citizen_vi(),
            (Self::PaymentRequested, _) => "Hồ sơ chờ Quý tổ chức nộp phí, lệ phí",
            (Self::Withdrawn, _) => "Hồ sơ đã được rút theo đề nghị của Quý tổ chức",
            (Self::ResultReady, _) => "Đã có kết quả, mời Quý tổ chức đến nhận",
            _ => self.citizen_vi(),
        }
    }

    /// Whether no further status is expected (3, 7, 8, 10).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Refused | Self::Withdrawn | Self::Stopped | Self::ResultReturned
        )
    }

    /// How far along the lifecycle a status is, used to order events that carry no
    /// `sequence`: a later stage wins over an earlier one at the same instant.
    pub fn stage(self) -> u8 {
        match self {
            Self::Submitted => 0,
            Self::Received => 1,
            Self::Processing | Self::SupplementRequested | Self::PaymentRequested => 2,
            Self::ResultReady => 3,
            Self::Refused | Self::Withdrawn | Self::Stopped | Self::ResultReturned => 4,
        }
    }
}

impl Serialize for DossierStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for DossierStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Code(i64),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Code(c) => Self::from_code(c)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown status code {c}"))),
            Raw::Name(n) => Self::from_name(&n)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown status name {n:?}"))),
        }
    }
}

impl schemars::JsonSchema for DossierStatus {
    fn schema_name() -> String {
        "DossierStatus".to_owned()
    }

    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        let names: Vec<serde_json::Value> = Self::ALL.iter().map(|s| s.name().into()).collect();
        let labels: Vec<String> = Self::ALL
            .iter()
            .map(|s| format!("{} = {} ({})", s.code(), s.name(), s.label_vi()))
            .collect();
        serde_json::from_value(serde_json::json!({
            "description": format!("National dossier status code, or its name: {}", labels.join("; ")),
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": 10},
                {"type": "string", "enum": names}
            ]
        }))
        .expect("static schema is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_accepted_by_code_name_or_numeric_string() {
        for (json, want) in [
            ("2", DossierStatus::Received),
            ("\"received\"", DossierStatus::Received),
            ("\"RESULT_READY\"", DossierStatus::ResultReady),
            ("\"9\"", DossierStatus::ResultReady),
            ("10", DossierStatus::ResultReturned),
        ] {
            let got: DossierStatus = serde_json::from_str(json).unwrap();
            assert_eq!(got, want, "{json}");
        }
    }

    #[test]
    fn unknown_codes_and_names_are_rejected() {
        for json in ["0", "11", "\"done\"", "null"] {
            assert!(
                serde_json::from_str::<DossierStatus>(json).is_err(),
                "{json}"
            );
        }
    }

    #[test]
    fn status_serialises_as_its_national_code() {
        assert_eq!(serde_json::to_string(&DossierStatus::Stopped).unwrap(), "8");
        assert_eq!(DossierStatus::Received.label_vi(), "Được tiếp nhận");
    }
}
