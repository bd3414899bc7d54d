//! What every test guest shares: an honest `describe`, `format` and `on-moment` built from the
//! check, so each hostile crate differs from `good` only in the one thing it does wrong.
//! Included with `#[path = "../shared.rs"] mod shared;` after `wit_bindgen::generate!`.

#![allow(dead_code)]
use crate::tsunagi::clinic::types::{Addition, Check, Facility, Field, Info, Output};

/// Who the guest is.
pub fn info(name: &str) -> Info {
    Info {
        name: name.to_string(),
        version: "1.0.0".to_string(),
        facilities: vec![Facility::Medical],
    }
}

/// An echo-like output: the check's id and date in the display and read-aloud text.
pub fn output(check: &Check) -> Output {
    Output {
        claim_fields: vec![Field {
            key: "visit-date".to_string(),
            label: "受診日".to_string(),
            value: check.visit_date.clone(),
        }],
        display: vec![format!("確認 {}", check.id)],
        read_aloud: format!("{} の確認です", check.visit_date),
        warnings: Vec::new(),
        next_action: None,
    }
}

/// Nothing to add.
pub fn addition() -> Addition {
    Addition {
        warnings: Vec::new(),
        next_action: None,
    }
}
