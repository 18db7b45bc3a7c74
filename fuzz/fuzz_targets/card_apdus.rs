//! Random APDU sequences against the software card runtime: no panic, and
//! every response ends in a status word.
//!
//! Input: a first byte of flags, then APDUs, each as a one-byte length and
//! that many bytes (a zero length is a power cycle). Flag bit 0 opens an
//! SCP03 session at a level chosen by bits 1..3 with the card's transport
//! keys first, and every APDU that parses is then sent wrapped, so the
//! fuzzer reaches the applications through the secure channel too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;
use vsc::card::blank::{BlankCard, GP_TEST_KEY};
use vsc::card::SoftCard;
use vsc::codec::{CommandApdu, ResponseApdu};
use vsc::file::Protector;
use vsc::scp03::{HostSession, InitializeUpdate, InitializeUpdateResponse, SecurityLevel, StaticKeys};
use vsc::secret::AesKey;
use vsc::transport::{CardTransport, InProcess, ResetKind};

fn card() -> Option<InProcess<SoftCard>> {
    let protector = Protector::Kek {
        key_id: "fuzz/1".into(),
        key: AesKey::from_slice(&[7; 32]).ok()?,
    };
    let vsc = BlankCard::new(1079).ok()?.build(&protector, &mut StdRng::seed_from_u64(1)).ok()?;
    Some(InProcess::insert(SoftCard::with_seed(vsc, 2).ok()?))
}

fn open(t: &mut InProcess<SoftCard>, level: SecurityLevel) -> Option<HostSession> {
    let k = || AesKey::from_slice(&GP_TEST_KEY).ok();
    let keys = StaticKeys::new(k()?, k()?, k()?).ok()?;
    let hc = [0x5A; 8];
    let r = t.transmit(&InitializeUpdate::new(1, hc).to_command().to_bytes()).ok()?;
    let resp = InitializeUpdateResponse::from_response(&ResponseApdu::parse(&r).ok()?).ok()?;
    let (ext, session) = HostSession::open(&keys, hc, &resp, level, None).ok()?;
    t.transmit(&ext.to_bytes()).ok()?;
    Some(session)
}

fuzz_target!(|data: &[u8]| {
    let Some((flags, mut rest)) = data.split_first() else { return };
    let Some(mut t) = card() else { return };
    let levels = [
        SecurityLevel::CMac,
        SecurityLevel::CDecCMac,
        SecurityLevel::CMacRMac,
        SecurityLevel::CDecCMacRMac,
        SecurityLevel::All,
    ];
    let level = levels[usize::from((flags >> 1) & 0x07) % levels.len()];
    let mut session = if flags & 1 == 1 { open(&mut t, level) } else { None };
    while let Some((len, tail)) = rest.split_first() {
        let len = usize::from(*len);
        if len == 0 {
            let _ = t.reset(ResetKind::Cold);
            session = None;
            rest = tail;
            continue;
        }
        let Some(apdu) = tail.get(..len) else { break };
        rest = &tail[len..];
        let bytes = match (&mut session, CommandApdu::parse(apdu)) {
            (Some(s), Ok(cmd)) => match s.wrap(&cmd) {
                Ok(w) => w.apdu.to_bytes(),
                Err(_) => apdu.to_vec(),
            },
            _ => apdu.to_vec(),
        };
        let Ok(resp) = t.transmit(&bytes) else { return };
        assert!(resp.len() >= 2, "a response without a status word");
    }
});
