//! The independent SCP03 host (`tests/scp03_host.py`, Python with pyscard
//! and cryptography) against a served blank card through pcscd.

use tests::harness::{self, run, Running, Scratch, PORT_0, PYTHON3, READER_0};

#[test]
fn the_python_scp03_host_opens_a_channel_with_a_served_blank_card() {
    harness::require(&[PYTHON3]);
    let script = harness::root().join("tests/scp03_host.py");
    assert!(
        script.is_file(),
        "{} is missing: the independent SCP03 host comes with the GlobalPlatform work (branch gp)",
        script.display()
    );
    let _readers = harness::lock_readers();
    let scratch = Scratch::new();
    let card = scratch.blank("00007001", "card.vsc");
    let _served = Running::serve(&scratch, &card, PORT_0);
    let out = run(PYTHON3.program, [script.to_str().unwrap(), "--reader", READER_0]);
    assert!(
        out.status.success(),
        "{} --reader {READER_0:?} failed ({}):\n--- stdout\n{}--- stderr\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
