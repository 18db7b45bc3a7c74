//! Scripts and replies to and from the wire, and the limits every message
//! from a station is checked against (everything a station sends is outside
//! input).

use protos::pb;

use crate::script::{Reply, Script, Step};

/// The limits the service holds stations to.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The largest message a station may send (bytes, encoded).
    pub max_station_message: usize,
    /// The largest message the keyserver sends a station.
    pub max_keyserver_message: usize,
    /// The largest admin request (a job's CSV file travels in one).
    pub max_admin_message: usize,
    /// Request ids, reader names, job names: bytes.
    pub max_name: usize,
    /// An ATR: bytes (ISO/IEC 7816-3 allows 33).
    pub max_atr: usize,
    /// One card response: bytes (an extended-length response and its SW).
    pub max_response: usize,
    /// Readers listed in a Hello.
    pub max_readers: usize,
    /// Cards a station may have in personalization at once.
    pub max_cards_per_station: usize,
    /// How long the keyserver waits for a station's reply to a script.
    pub reply_timeout: std::time::Duration,
    /// How long a Perso stream waits for its request to arrive on the
    /// control stream (the station sends both at once).
    pub request_wait: std::time::Duration,
    /// A reservation whose card was never opened is voided after this long.
    pub unopened_ttl: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_station_message: 1 << 20,
            max_keyserver_message: 4 << 20,
            max_admin_message: 64 << 20,
            max_name: crate::jobs::MAX_NAME_LEN,
            max_atr: 33,
            max_response: 65_538,
            max_readers: 256,
            max_cards_per_station: 64,
            reply_timeout: std::time::Duration::from_secs(600),
            request_wait: std::time::Duration::from_secs(10),
            unopened_ttl: std::time::Duration::from_secs(15 * 60),
        }
    }
}

/// A script for the wire.
pub fn script_to_pb(script: &Script, round_trip: u32) -> pb::Script {
    pb::Script {
        round_trip,
        steps: script
            .steps
            .iter()
            .map(|s| pb::Step {
                step: Some(match s {
                    Step::Apdu {
                        command,
                        expect,
                        timeout_ms,
                    } => pb::step::Step::Apdu(pb::Apdu {
                        command: command.clone(),
                        expect: expect
                            .iter()
                            .map(|p| pb::SwPattern {
                                value: u32::from(p.value),
                                mask: u32::from(p.mask),
                            })
                            .collect(),
                        timeout_ms: *timeout_ms,
                    }),
                    Step::Reset { cold } => pb::step::Step::Reset(pb::Reset { cold: *cold }),
                }),
            })
            .collect(),
    }
}

/// A station's reply to `script`, checked against it: no more responses
/// than steps, no more ATRs than reset steps, a `stopped_at` inside the
/// script, no response longer than the limit.
pub fn reply_from_pb(reply: pb::Reply, script: &Script, limits: &Limits) -> Result<Reply, String> {
    let steps = script.steps.len();
    let resets = script
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Reset { .. }))
        .count();
    if reply.responses.len() > steps {
        return Err(format!(
            "the reply has {} responses for a script of {steps} steps",
            reply.responses.len()
        ));
    }
    if reply.atrs_after_reset.len() > resets {
        return Err(format!(
            "the reply has {} ATRs for a script with {resets} resets",
            reply.atrs_after_reset.len()
        ));
    }
    if let Some(i) = reply.responses.iter().position(|r| r.len() > limits.max_response) {
        return Err(format!(
            "response {i} is longer than {} bytes",
            limits.max_response
        ));
    }
    if reply.atrs_after_reset.iter().any(|a| a.len() > limits.max_atr) {
        return Err(format!("an ATR is longer than {} bytes", limits.max_atr));
    }
    let stopped_at = match reply.stopped_at {
        None => None,
        Some(i) => {
            let i = usize::try_from(i).map_err(|_| "stopped_at is out of range".to_string())?;
            if i >= steps {
                return Err(format!("stopped_at {i} is past the script's {steps} steps"));
            }
            Some(i)
        }
    };
    Ok(Reply {
        responses: reply.responses,
        atrs_after_reset: reply.atrs_after_reset,
        stopped_at,
        card_removed: reply.card_removed,
    })
}

/// Checks a name-like field a station sent.
pub fn check_name(what: &str, value: &str, limits: &Limits, required: bool) -> Result<(), String> {
    if required && value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if value.len() > limits.max_name {
        return Err(format!("{what} is longer than {} bytes", limits.max_name));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{what} contains control characters"));
    }
    Ok(())
}

/// A short, printable rendering of a name a station sent, for messages.
pub fn shown(value: &str) -> String {
    let mut s: String = value.chars().filter(|c| !c.is_control()).take(64).collect();
    if value.chars().count() > 64 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::SwPattern;

    fn script() -> Script {
        Script {
            steps: vec![
                Step::Apdu {
                    command: vec![0, 0xA4, 4, 0],
                    expect: vec![SwPattern::exact(0x9000)],
                    timeout_ms: 0,
                },
                Step::Reset { cold: true },
            ],
        }
    }

    #[test]
    fn replies_are_checked_against_their_script() {
        let l = Limits::default();
        let ok = pb::Reply {
            responses: vec![vec![0x90, 0], vec![]],
            atrs_after_reset: vec![vec![0x3B]],
            stopped_at: None,
            ..Default::default()
        };
        assert!(reply_from_pb(ok.clone(), &script(), &l).is_ok());
        let mut r = ok.clone();
        r.responses.push(vec![]);
        assert!(reply_from_pb(r, &script(), &l).is_err());
        let mut r = ok.clone();
        r.atrs_after_reset.push(vec![]);
        assert!(reply_from_pb(r, &script(), &l).is_err());
        let mut r = ok.clone();
        r.stopped_at = Some(2);
        assert!(reply_from_pb(r, &script(), &l).is_err());
        let mut r = ok;
        r.responses[0] = vec![0; 70_000];
        assert!(reply_from_pb(r, &script(), &l).is_err());
    }

    #[test]
    fn scripts_convert() {
        let p = script_to_pb(&script(), 2);
        assert_eq!(p.round_trip, 2);
        assert_eq!(p.steps.len(), 2);
    }
}
