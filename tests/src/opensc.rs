//! What the outside clients do with a card in reader 0: OpenSC's
//! `pkcs15-tool` reads certificates, `pkcs11-tool` (through
//! `opensc-pkcs11.so`) signs and decrypts with the card's keys, `openssl`
//! checks the results. Every step fails the test with the tool's output.

use std::path::{Path, PathBuf};

use crate::harness::{run_ok, OPENSC_PKCS11, OPENSSL, PKCS11_TOOL, PKCS15_TOOL, READER_0};

fn p(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", path.display()))
}

/// `openssl ARGS`; its standard output.
pub fn openssl(args: &[&str]) -> String {
    run_ok(OPENSSL.program, args)
}

/// `pkcs11-tool --module opensc-pkcs11.so --login --pin PIN ARGS`.
pub fn pkcs11(pin: &str, args: &[&str]) -> String {
    let mut all = vec!["--module", OPENSC_PKCS11, "--login", "--pin", pin];
    all.extend_from_slice(args);
    run_ok(PKCS11_TOOL.program, &all)
}

/// `pkcs15-tool --list-certificates` on reader 0.
pub fn list_certificates() -> String {
    run_ok(PKCS15_TOOL.program, ["--reader", READER_0, "--list-certificates"])
}

/// Reads certificate `id` (`01` = 9A, `02` = 9C, `03` = 9D) into
/// `dir/card-ID.pem`; (the certificate, its public key in PEM).
pub fn read_certificate(dir: &Path, id: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("card-{id}.pem"));
    run_ok(
        PKCS15_TOOL.program,
        [
            "--reader",
            READER_0,
            "--read-certificate",
            id,
            "--output",
            p(&cert),
        ],
    );
    let public = dir.join(format!("card-{id}.pub.pem"));
    openssl(&["x509", "-in", p(&cert), "-pubkey", "-noout", "-out", p(&public)]);
    (cert, public)
}

/// Signs `data` with key `id` by mechanism `mech` (ECDSA signatures in
/// openssl's DER format) and checks the signature with `openssl dgst
/// -verify` against `public`.
pub fn sign_and_verify(dir: &Path, pin: &str, id: &str, mech: &str, public: &Path, data: &Path) {
    let sig = dir.join(format!("sig-{id}.bin"));
    let mut args = vec!["--sign", "--id", id, "-m", mech];
    if mech.starts_with("ECDSA") {
        args.extend_from_slice(&["--signature-format", "openssl"]);
    }
    args.extend_from_slice(&["--input-file", p(data), "--output-file", p(&sig)]);
    pkcs11(pin, &args);
    let v = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        p(public),
        "-signature",
        p(&sig),
        p(data),
    ]);
    assert!(v.contains("Verified OK"), "key {id}: {v}");
}

/// Encrypts a message to `cert` with openssl (RSA PKCS#1 v1.5) and has the
/// card decrypt it with key `id`; the plaintexts must match.
pub fn decrypts_on_card(dir: &Path, pin: &str, id: &str, cert: &Path) {
    let msg = dir.join("msg.txt");
    std::fs::write(&msg, b"for the key management key only")
        .unwrap_or_else(|e| panic!("writing {}: {e}", msg.display()));
    let enc = dir.join("msg.enc");
    openssl(&[
        "pkeyutl",
        "-encrypt",
        "-certin",
        "-inkey",
        p(cert),
        "-in",
        p(&msg),
        "-out",
        p(&enc),
    ]);
    let dec = dir.join("msg.dec");
    pkcs11(
        pin,
        &[
            "--decrypt",
            "--id",
            id,
            "-m",
            "RSA-PKCS",
            "--input-file",
            p(&enc),
            "--output-file",
            p(&dec),
        ],
    );
    let read = |f: &Path| std::fs::read(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
    assert_eq!(read(&dec), read(&msg), "the card's decryption with key {id}");
}
