//! The `[providers.smpp]` table of a `kind = "smpp"` provider: where the SMSC is, how herald
//! binds to it, and how messages are addressed and split. Validated with the rest of the
//! configuration; every problem names its field (`providers[2].smpp.window`).
//!
//! ```toml
//! [[providers]]
//! name = "carrier-a"
//! kind = "smpp"
//! channel = "sms"
//! currency = "CNY"
//! [providers.smpp]
//! host = "smsc.carrier-a.example"
//! system_id = "herald"
//! password_env = "HERALD_CARRIER_A_PASSWORD"
//! source_addr = "HERALD"
//! ```

use serde::Deserialize;

use crate::config::Secret;

/// SMPP limits on the bind fields (C-Octet strings, terminating NUL not counted).
const MAX_SYSTEM_ID: usize = 15;
const MAX_PASSWORD: usize = 8;
const MAX_SYSTEM_TYPE: usize = 12;
const MAX_SERVICE_TYPE: usize = 5;
const MAX_SOURCE_ADDR: usize = 20;
/// An alphanumeric sender id (TON 5) carries at most 11 characters on the air interface.
const MAX_ALPHANUMERIC_SENDER: usize = 11;
/// Binds per provider and the window of each: far above what SMSC contracts allow.
pub const MAX_BINDS: usize = 64;
pub const MAX_WINDOW: usize = 10_000;

/// How a message's text becomes `data_coding` and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataCodingPolicy {
    /// The alphabet herald bills by: GSM 03.38 (`data_coding` 0, one septet per octet) when
    /// every character is in the GSM default alphabet or its extension table, else UCS-2
    /// (`data_coding` 8). The parts sent are then exactly the parts herald counted and priced.
    #[default]
    Auto,
}

/// How a message longer than one part is concatenated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LongMessages {
    /// A 3GPP TS 23.040 user data header in each part (8-bit reference), `esm_class` UDHI set.
    #[default]
    Udh,
    /// The SAR TLVs (`sar_msg_ref_num`, `sar_total_segments`, `sar_segment_seqnum`); the SMSC
    /// builds the header.
    Sar,
}

/// How the message id in a delivery receipt relates to the one `submit_sm_resp` answered.
/// Some SMSCs answer a hexadecimal id and write it in decimal in the receipt text (or the
/// reverse); the receipt's id is converted to the submit answer's form before it is matched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptIdConversion {
    /// The receipt carries the id as `submit_sm_resp` answered it.
    #[default]
    None,
    /// The receipt's id is decimal; `submit_sm_resp` answered it in hexadecimal.
    DecimalToHex,
    /// The receipt's id is hexadecimal; `submit_sm_resp` answered it in decimal.
    HexToDecimal,
}

/// How the provider binds to the SMSC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindMode {
    /// `binds` transceiver binds: each sends and receives.
    #[default]
    Transceiver,
    /// `binds` pairs of a transmitter bind (sends) and a receiver bind (receipts and replies),
    /// for SMSCs that do not offer transceivers (SMPP 3.3 style).
    TransmitterReceiver,
}

/// The SMPP settings of one provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmppConfig {
    /// The SMSC's host name or address.
    pub host: String,
    pub port: u16,
    /// The ESME's `system_id` (at most 15 characters).
    pub system_id: String,
    /// The environment variable holding the bind password (at most 8 characters). Never in
    /// the file. Unset: an empty password.
    pub password_env: Option<String>,
    /// The password read from `password_env`.
    #[serde(skip)]
    pub password: Option<Secret>,
    pub system_type: String,
    /// 0x34 for SMPP 3.4.
    pub interface_version: u8,
    /// Binds (or transmitter and receiver pairs) kept open; messages are spread over those
    /// that are bound.
    pub binds: usize,
    pub bind_mode: BindMode,
    /// TLS to the SMSC (the server checked against `host`).
    pub tls: bool,
    /// PEM file of the CAs that sign the SMSC's certificate; unset: the system's roots.
    pub ca_file: Option<String>,
    /// `submit_sm` outstanding per bind (sent, not yet answered).
    pub window: usize,
    /// A `submit_sm` unanswered after this long is a transient failure (and so is a bind,
    /// an `enquire_link` or an `unbind` that takes longer).
    pub response_timeout_ms: u64,
    /// An `enquire_link` is sent after this long without traffic on a bind.
    pub enquire_link_seconds: u64,
    pub connect_timeout_ms: u64,
    /// Reconnect delays: exponential from `reconnect_min_ms` to `reconnect_max_ms`, jittered.
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// How long a message throttled by the SMSC (`ESME_RTHROTTLED`, `ESME_RMSGQFUL`) waits.
    pub throttle_retry_ms: u64,
    /// The sender: an alphanumeric sender id (at most 11 characters) or a number.
    pub source_addr: String,
    /// Type of number of `source_addr`; unset: 5 (alphanumeric) when it holds a letter,
    /// else 1 (international).
    pub source_addr_ton: Option<u8>,
    /// Numbering plan of `source_addr`; unset: 0 for an alphanumeric sender, else 1 (E.164).
    pub source_addr_npi: Option<u8>,
    pub service_type: String,
    /// `registered_delivery`: 1 asks for a receipt on the final outcome, 0 for none.
    pub registered_delivery: u8,
    pub data_coding: DataCodingPolicy,
    pub long_messages: LongMessages,
    pub receipt_id_conversion: ReceiptIdConversion,
    /// Part ids of long messages kept to place per-part receipts (about 50 bytes each);
    /// past it the oldest are forgotten.
    pub part_receipt_ids: usize,
    /// After a restart, ask the SMSC (`query_sm`) the state of messages the submit log shows
    /// it accepted while their answers were not yet recorded, and apply it as a receipt.
    /// Off for SMSCs that do not answer `query_sm`.
    pub query_in_doubt: bool,
    /// A reply in several parts still missing some after this long is dropped.
    pub mo_reassembly_timeout_seconds: u64,
    /// Replies in several parts held at once waiting for their other parts (each at most
    /// 255 parts of 140 octets); past it the oldest is dropped.
    pub mo_reassembly_max: usize,
    /// Where the submit log lives: the server's `data_dir`, set when the environment is
    /// applied. Unset (a config built in code): no submit log, so every message in flight at
    /// a crash stays in doubt.
    #[serde(skip)]
    pub state_dir: Option<std::path::PathBuf>,
}

impl Default for SmppConfig {
    fn default() -> Self {
        SmppConfig {
            host: String::new(),
            port: 2775,
            system_id: String::new(),
            password_env: None,
            password: None,
            system_type: String::new(),
            interface_version: 0x34,
            binds: 1,
            bind_mode: BindMode::Transceiver,
            tls: false,
            ca_file: None,
            window: 10,
            response_timeout_ms: 10_000,
            enquire_link_seconds: 30,
            connect_timeout_ms: 5_000,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
            throttle_retry_ms: 1_000,
            source_addr: String::new(),
            source_addr_ton: None,
            source_addr_npi: None,
            service_type: String::new(),
            registered_delivery: 1,
            data_coding: DataCodingPolicy::Auto,
            long_messages: LongMessages::Udh,
            receipt_id_conversion: ReceiptIdConversion::None,
            part_receipt_ids: 1 << 20,
            query_in_doubt: true,
            mo_reassembly_timeout_seconds: 300,
            mo_reassembly_max: 10_000,
            state_dir: None,
        }
    }
}

impl SmppConfig {
    /// Reads the password from the variable `password_env` names; empty counts as unset.
    pub fn read_env(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        self.password = self
            .password_env
            .as_deref()
            .and_then(env)
            .filter(|v| !v.is_empty())
            .map(Secret::new);
    }

    /// The source address's TON, explicit or derived from its text.
    pub fn source_ton(&self) -> u8 {
        self.source_addr_ton
            .unwrap_or(if self.alphanumeric_sender() { 5 } else { 1 })
    }

    /// The source address's NPI, explicit or derived from its text.
    pub fn source_npi(&self) -> u8 {
        self.source_addr_npi
            .unwrap_or(if self.alphanumeric_sender() { 0 } else { 1 })
    }

    fn alphanumeric_sender(&self) -> bool {
        !self.source_addr.bytes().all(|b| b.is_ascii_digit())
    }

    /// Adds every problem to `errs`, each prefixed with `at` (`providers[0].smpp`).
    pub fn validate(&self, at: &str, errs: &mut Vec<String>) {
        let mut err = |field: &str, msg: String| errs.push(format!("{at}.{field}: {msg}"));
        let printable = |s: &str| s.bytes().all(|b| (0x20..0x7f).contains(&b));
        if self.host.trim().is_empty() {
            err("host", "required for kind = \"smpp\"".into());
        }
        if self.port == 0 {
            err("port", "must not be 0".into());
        }
        for (field, value, max, required) in [
            ("system_id", &self.system_id, MAX_SYSTEM_ID, true),
            ("system_type", &self.system_type, MAX_SYSTEM_TYPE, false),
            ("service_type", &self.service_type, MAX_SERVICE_TYPE, false),
        ] {
            if required && value.is_empty() {
                err(field, "required for kind = \"smpp\"".into());
            } else if value.len() > max || !printable(value) {
                err(
                    field,
                    format!("{value:?} must be at most {max} printable ASCII characters"),
                );
            }
        }
        if let Some(var) = self.password_env.as_deref() {
            match &self.password {
                None => err(
                    "password_env",
                    format!("environment variable {var:?} is not set"),
                ),
                Some(p) if p.expose().len() > MAX_PASSWORD || !p.expose().is_ascii() => err(
                    "password_env",
                    format!("the value of {var:?} must be at most {MAX_PASSWORD} ASCII characters"),
                ),
                Some(_) => {}
            }
        }
        if self.ca_file.is_some() && !self.tls {
            err("ca_file", "only with tls = true".into());
        }
        if !(1..=MAX_BINDS).contains(&self.binds) {
            err("binds", format!("must be between 1 and {MAX_BINDS}"));
        }
        if !(1..=MAX_WINDOW).contains(&self.window) {
            err("window", format!("must be between 1 and {MAX_WINDOW}"));
        }
        for (field, v) in [
            ("response_timeout_ms", self.response_timeout_ms),
            ("enquire_link_seconds", self.enquire_link_seconds),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("reconnect_min_ms", self.reconnect_min_ms),
            ("throttle_retry_ms", self.throttle_retry_ms),
            ("part_receipt_ids", self.part_receipt_ids as u64),
            (
                "mo_reassembly_timeout_seconds",
                self.mo_reassembly_timeout_seconds,
            ),
            ("mo_reassembly_max", self.mo_reassembly_max as u64),
        ] {
            if v == 0 {
                err(field, "must be at least 1".into());
            }
        }
        if self.reconnect_max_ms < self.reconnect_min_ms {
            err(
                "reconnect_max_ms",
                "must be at least reconnect_min_ms".into(),
            );
        }
        let src = &self.source_addr;
        if src.is_empty() {
            err("source_addr", "required for kind = \"smpp\"".into());
        } else if src.len() > MAX_SOURCE_ADDR || !printable(src) {
            err(
                "source_addr",
                format!("{src:?} must be at most {MAX_SOURCE_ADDR} printable ASCII characters"),
            );
        } else if self.source_ton() == 5 && src.len() > MAX_ALPHANUMERIC_SENDER {
            err(
                "source_addr",
                format!(
                    "{src:?}: an alphanumeric sender id is at most {MAX_ALPHANUMERIC_SENDER} characters"
                ),
            );
        }
        if self.source_ton() > 6 {
            err("source_addr_ton", "must be between 0 and 6".into());
        }
        if ![0u8, 1, 3, 4, 6, 8, 9, 10, 14, 18].contains(&self.source_npi()) {
            err(
                "source_addr_npi",
                "must be one of 0, 1, 3, 4, 6, 8, 9, 10, 14, 18".into(),
            );
        }
        if self.registered_delivery > 0x1f {
            err("registered_delivery", "must be between 0 and 31".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> SmppConfig {
        SmppConfig {
            host: "127.0.0.1".into(),
            system_id: "herald".into(),
            source_addr: "HERALD".into(),
            ..SmppConfig::default()
        }
    }

    fn problems(c: &SmppConfig) -> Vec<String> {
        let mut errs = Vec::new();
        c.validate("providers[1].smpp", &mut errs);
        errs
    }

    #[test]
    fn a_minimal_config_is_valid_and_derives_ton_npi() {
        let c = valid();
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
        assert_eq!((c.source_ton(), c.source_npi()), (5, 0));
        let numeric = SmppConfig {
            source_addr: "8613800138000".into(),
            ..valid()
        };
        assert_eq!((numeric.source_ton(), numeric.source_npi()), (1, 1));
        let explicit = SmppConfig {
            source_addr: "10690".into(),
            source_addr_ton: Some(3),
            source_addr_npi: Some(0),
            ..valid()
        };
        assert_eq!((explicit.source_ton(), explicit.source_npi()), (3, 0));
    }

    #[test]
    fn every_problem_names_its_field() {
        let c = SmppConfig {
            host: " ".into(),
            system_id: "a-system-id-far-too-long".into(),
            password_env: Some("HERALD_TEST_UNSET".into()),
            binds: 0,
            window: MAX_WINDOW + 1,
            response_timeout_ms: 0,
            reconnect_min_ms: 10,
            reconnect_max_ms: 5,
            source_addr: "ALPHANUMERIC-TOO-LONG".into(),
            registered_delivery: 0x20,
            ca_file: Some("ca.pem".into()),
            mo_reassembly_max: 0,
            ..SmppConfig::default()
        };
        let errs = problems(&c);
        for field in [
            "host",
            "system_id",
            "password_env",
            "binds",
            "window",
            "response_timeout_ms",
            "reconnect_max_ms",
            "source_addr",
            "registered_delivery",
            "ca_file",
            "mo_reassembly_max",
        ] {
            let prefix = format!("providers[1].smpp.{field}: ");
            assert!(
                errs.iter().any(|e| e.starts_with(&prefix)),
                "no error for {field}: {errs:?}"
            );
        }
    }

    /// The commented example in config/herald.toml, uncommented, is a valid provider, and
    /// the config rejects an smpp provider without its table or marked idempotent.
    #[test]
    fn the_shipped_example_is_valid() {
        use crate::config::{Config, DEFAULT_TOML};
        let start = DEFAULT_TOML
            .find("# name = \"carrier-a\"")
            .expect("the example is in the default config");
        let example: String = DEFAULT_TOML[start..]
            .lines()
            .take_while(|l| l.starts_with("# "))
            .map(|l| format!("{}\n", &l[2..]))
            .collect();
        let toml_text = format!("{DEFAULT_TOML}\n[[providers]]\n{example}");
        let mut c: Config = toml::from_str(&toml_text).expect("the example parses");
        c.apply_env(&|k| (k == "HERALD_CARRIER_A_PASSWORD").then(|| "pw".to_string()));
        assert_eq!(c.validate(), Ok(()));
        let p = c.providers.last().expect("the example provider");
        let smpp = p.smpp.as_ref().expect("its table");
        assert_eq!((smpp.binds, smpp.window, smpp.port), (2, 10, 2775));
        assert_eq!(smpp.long_messages, LongMessages::Udh);

        let mut bad = c.clone();
        let last = bad.providers.len() - 1;
        bad.providers[last].idempotent = true;
        bad.providers[last].smpp = None;
        let errs = bad.validate().expect_err("invalid");
        assert!(
            errs.iter()
                .any(|e| e == &format!("providers[{last}].smpp: required for kind = \"smpp\"")),
            "{errs:?}"
        );
        let mut bad = c.clone();
        bad.providers[last].idempotent = true;
        bad.providers[0].smpp = Some(valid());
        let errs = bad.validate().expect_err("invalid");
        assert!(errs
            .iter()
            .any(|e| e.starts_with(&format!("providers[{last}].idempotent"))));
        assert!(errs
            .iter()
            .any(|e| e == "providers[0].smpp: only for kind = \"smpp\""));
    }

    #[test]
    fn the_password_comes_from_the_environment() {
        let mut c = SmppConfig {
            password_env: Some("PW".into()),
            ..valid()
        };
        c.read_env(&|k| (k == "PW").then(|| "secret".to_string()));
        assert_eq!(
            c.password.as_ref().map(|p| p.expose()),
            Some(&b"secret"[..])
        );
        assert!(problems(&c).is_empty());
        c.read_env(&|_| Some("much-too-long".into()));
        assert_eq!(problems(&c).len(), 1);
        assert!(format!("{c:?}").contains("Secret(***)"));
    }
}
