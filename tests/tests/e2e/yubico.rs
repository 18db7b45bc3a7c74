//! yubico-piv-tool against a served blank card, with the default
//! management key; then Ctrl-C, and the file holds what the tool changed.

use std::path::Path;

use tests::harness::{self, run, run_ok, Running, Scratch, OPENSSL, PORT_0, YUBICO_PIV_TOOL};
use tests::piv;
use vsc::card::SoftCard;
use vsc::codec::StatusWord;
use vsc::transport::{exchange, InProcess};

/// yubico-piv-tool only looks at readers whose name contains this.
pub const READER: &str = "Virtual PCD";

/// `yubico-piv-tool -r "Virtual PCD" ARGS`, which must succeed; stdout.
pub fn ykpiv(args: &[&str]) -> String {
    let mut all = vec!["-r", READER];
    all.extend_from_slice(args);
    run_ok(YUBICO_PIV_TOOL.program, &all)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn yubico_piv_tool_manages_a_blank_card_and_ctrl_c_keeps_the_changes() {
    harness::require(&[YUBICO_PIV_TOOL, OPENSSL]);
    let _readers = harness::lock_readers();
    let scratch = Scratch::new();
    let card = scratch.blank("00005001", "card.vsc");
    let mut served = Running::serve(&scratch, &card, PORT_0);

    // generate + selfsign-certificate + import-certificate (9A, P-256).
    let pub9a = scratch.join("pub9a.pem");
    let cert9a = scratch.join("cert9a.pem");
    ykpiv(&["-a", "generate", "-s", "9a", "-A", "ECCP256", "-o", p(&pub9a)]);
    ykpiv(&[
        "-a",
        "verify-pin",
        "-P",
        "123456",
        "-a",
        "selfsign-certificate",
        "-s",
        "9a",
        "-S",
        "/CN=e2e 9a/",
        "-i",
        p(&pub9a),
        "-o",
        p(&cert9a),
    ]);
    ykpiv(&["-a", "import-certificate", "-s", "9a", "-i", p(&cert9a)]);

    // import-key (9E, P-256 made by openssl) + its certificate.
    let key9e = scratch.join("key9e.pem");
    let cert9e = scratch.join("cert9e.pem");
    run_ok(
        OPENSSL.program,
        [
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            p(&key9e),
        ],
    );
    run_ok(
        OPENSSL.program,
        [
            "req",
            "-x509",
            "-new",
            "-key",
            p(&key9e),
            "-subj",
            "/CN=e2e 9e/",
            "-days",
            "30",
            "-out",
            p(&cert9e),
        ],
    );
    ykpiv(&["-a", "import-key", "-s", "9e", "-i", p(&key9e)]);
    ykpiv(&["-a", "import-certificate", "-s", "9e", "-i", p(&cert9e)]);

    let status = ykpiv(&["-a", "status"]);
    assert!(status.contains("Slot 9a"), "{status}");
    assert!(status.contains("CN=e2e 9a"), "{status}");
    assert!(status.contains("Slot 9e"), "{status}");
    assert!(status.contains("CN=e2e 9e"), "{status}");

    // verify-pin, change-pin; the old PIN is refused afterwards.
    ykpiv(&["-a", "verify-pin", "-P", "123456"]);
    ykpiv(&["-a", "change-pin", "-P", "123456", "-N", "654321"]);
    ykpiv(&["-a", "verify-pin", "-P", "654321"]);
    let old = run(
        YUBICO_PIV_TOOL.program,
        ["-r", READER, "-a", "verify-pin", "-P", "123456"],
    );
    assert!(!old.status.success(), "the old PIN still verifies");

    // Ctrl-C: the card leaves the reader, the file holds the new PIN.
    assert_eq!(served.interrupt(), Some(0), "{:?}", served.stderr.all());
    let mut t = InProcess::insert(SoftCard::open_file(&card, scratch.unlock()).unwrap());
    piv::select_piv(&mut t).unwrap();
    let verify = |t: &mut InProcess<SoftCard>, pin: &[u8]| {
        exchange(t, &piv::verify_pin_command(pin), false).unwrap().sw
    };
    assert_eq!(verify(&mut t, b"654321"), StatusWord::Success);
    assert_ne!(verify(&mut t, b"123456"), StatusWord::Success);
}
