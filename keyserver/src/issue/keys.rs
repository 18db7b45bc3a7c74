//! Card key pairs: generated for escrow (P-256 here, RSA-2048 from the
//! [`RsaKeySource`]), checked pairwise, turned into IMPORT ASYMMETRIC KEY
//! commands and the master VSC's key entries; public keys read back from
//! GENERATE; certificates as PIV objects.
//!
//! P-256 key pairs are generated and checked with ring (its P-256 is
//! several times faster than the `p256` crate's, which issuance felt: four
//! keys a badge); the scalar that is imported, the PKCS#8 document the
//! master VSC keeps and the public point the certificate carries are the
//! ones the pairwise check used.

use rand::{CryptoRng, RngCore};
use ring::signature::{
    EcdsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use rsa::pkcs8::EncodePublicKey;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use vsc::codec::{CommandApdu, Instruction, Tlv, TlvRef};
use vsc::file::PinPolicy;
use vsc::secret::SecretBytes;
use vsc::tag;
use zeroize::Zeroizing;

use crate::ports::RsaKeySource;
use crate::profile::Algorithm;

/// RSA-2048: bytes of the modulus, and of each CRT component.
const RSA_BYTES: usize = 256;
const RSA_HALF: usize = RSA_BYTES / 2;
const RSA_EXPONENT: u32 = 65_537;

/// The DER of a PKCS#8 AlgorithmIdentifier for P-256: id-ecPublicKey,
/// prime256v1.
const P256_ALGORITHM_ID: [u8; 21] = [
    0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE,
    0x3D, 0x03, 0x01, 0x07,
];

/// An escrowed key pair's private half. Both kinds zeroize on drop.
pub(crate) enum PrivateKey {
    /// The scalar (IMPORT) and the PKCS#8 document it came from (the master
    /// VSC's secret key area).
    P256 {
        key: p256::SecretKey,
        pkcs8: SecretBytes,
    },
    Rsa2048(Box<RsaPrivateKey>),
}

/// The private scalar and the public point of a P-256 PKCS#8 document
/// (RFC 5958 around an RFC 5915 ECPrivateKey with its public key).
fn p256_parts(pkcs8: &[u8]) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), String> {
    let bad = |what: &str| format!("the generated P-256 key's PKCS#8 document: {what}");
    let info = TlvRef::parse_single(pkcs8).map_err(|_| bad("not one DER object"))?;
    let parts = info.children().map_err(|_| bad("not a SEQUENCE"))?;
    let (Some(alg), Some(inner)) = (parts.get(1), parts.get(2)) else {
        return Err(bad("too few fields"));
    };
    let mut alg_der = Vec::new();
    Tlv::new(alg.tag, alg.value.to_vec()).write(&mut alg_der);
    if alg_der != P256_ALGORITHM_ID || inner.tag.raw() != 0x04 {
        return Err(bad("not an id-ecPublicKey prime256v1 key"));
    }
    let ec = TlvRef::parse_single(inner.value).map_err(|_| bad("no ECPrivateKey"))?;
    let fields = ec
        .children()
        .map_err(|_| bad("the ECPrivateKey is not a SEQUENCE"))?;
    let scalar = fields
        .iter()
        .find(|f| f.tag.raw() == 0x04)
        .map(|f| f.value)
        .filter(|d| d.len() == 32)
        .ok_or_else(|| bad("no 32-byte private key"))?;
    let public = fields
        .iter()
        .find(|f| f.tag.raw() == 0xA1)
        .and_then(|f| TlvRef::parse_single(f.value).ok())
        .filter(|b| b.tag.raw() == 0x03)
        .and_then(|b| b.value.strip_prefix(&[0x00]))
        .filter(|p| p.len() == 65 && p.first() == Some(&0x04))
        .ok_or_else(|| bad("no uncompressed public point"))?;
    Ok((Zeroizing::new(scalar.to_vec()), public.to_vec()))
}

impl PrivateKey {
    /// A new key pair for escrow: P-256 from `rng`, RSA-2048 from `rsa`,
    /// checked (RSA: 2048 bits, e = 65537, two primes) and pairwise
    /// consistent (a random digest signed and verified). Returns the key
    /// and its SubjectPublicKeyInfo (DER).
    pub(crate) fn generate(
        algorithm: Algorithm,
        rsa: &dyn RsaKeySource,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(PrivateKey, Vec<u8>), String> {
        let mut digest = [0u8; 32];
        rng.fill_bytes(&mut digest);
        let inconsistent = || "the key pair failed its pairwise consistency check".to_string();
        let encoding = |_| "encoding the public key failed".to_string();
        match algorithm {
            Algorithm::P256 => {
                let system = ring::rand::SystemRandom::new();
                let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
                let generated = EcdsaKeyPair::generate_pkcs8(alg, &system)
                    .map_err(|_| "generating a P-256 key pair failed".to_string())?;
                // ring's document and key pair are not zeroized when they
                // go (ring has no zeroize); our copies are.
                let pkcs8 = SecretBytes::from_slice(generated.as_ref());
                let (scalar, point) = p256_parts(pkcs8.expose_secret())?;
                // ring rebuilds the pair from the very scalar that will be
                // imported and the point the certificate will carry (and
                // refuses them if they do not belong together); then a
                // random message is signed and verified.
                let pair = EcdsaKeyPair::from_private_key_and_public_key(alg, &scalar, &point, &system)
                    .map_err(|_| inconsistent())?;
                let sig = pair.sign(&system, &digest).map_err(|_| inconsistent())?;
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
                    .verify(&digest, sig.as_ref())
                    .map_err(|_| inconsistent())?;
                let key = p256::SecretKey::from_slice(&scalar).map_err(|_| inconsistent())?;
                let spki = p256::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| inconsistent())?
                    .to_public_key_der()
                    .map_err(encoding)?;
                Ok((PrivateKey::P256 { key, pkcs8 }, spki.as_bytes().to_vec()))
            }
            Algorithm::Rsa2048 => {
                let mut k = rsa.rsa2048().map_err(|e| e.to_string())?;
                if k.size() != RSA_BYTES
                    || k.e() != &BigUint::from(RSA_EXPONENT)
                    || k.primes().len() != 2
                    || k.validate().is_err()
                {
                    return Err(
                        "the RSA key source gave a key that is not RSA-2048 with e = 65537 and two primes"
                            .into(),
                    );
                }
                k.precompute()
                    .map_err(|_| "the RSA key's CRT values cannot be computed".to_string())?;
                let public = k.to_public_key();
                let sig = k
                    .sign(Pkcs1v15Sign::new_unprefixed(), &digest)
                    .map_err(|_| inconsistent())?;
                public
                    .verify(Pkcs1v15Sign::new_unprefixed(), &digest, &sig)
                    .map_err(|_| inconsistent())?;
                let spki = public.to_public_key_der().map_err(encoding)?;
                Ok((PrivateKey::Rsa2048(Box::new(k)), spki.as_bytes().to_vec()))
            }
        }
    }

    /// IMPORT ASYMMETRIC KEY (INS `FE`): `00 FE alg slot` with `06 d` (P-256)
    /// or `01 p 02 q 03 dP 04 dQ 05 qInv` (RSA, each 128 bytes), and the
    /// PIN policy when the profile sets one.
    pub(crate) fn import_command(
        &self,
        slot: u8,
        pin_policy: Option<PinPolicy>,
    ) -> Result<CommandApdu, String> {
        let mut data = Zeroizing::new(Vec::with_capacity(700));
        let algorithm = match self {
            PrivateKey::P256 { key, .. } => {
                let d = Zeroizing::new(key.to_bytes().to_vec());
                write_secret_tlv(0x06, &d, &mut data);
                Algorithm::P256
            }
            PrivateKey::Rsa2048(k) => {
                let [p, q] = k.primes() else {
                    return Err("the RSA key does not have two primes".into());
                };
                let (Some(dp), Some(dq), Some(qinv)) = (k.dp(), k.dq(), k.crt_coefficient()) else {
                    return Err("the RSA key lacks its CRT values".into());
                };
                let parts: [(u8, &BigUint); 5] =
                    [(0x01, p), (0x02, q), (0x03, dp), (0x04, dq), (0x05, &qinv)];
                for (t, v) in parts {
                    let padded = left_pad(&Zeroizing::new(v.to_bytes_be()), RSA_HALF)
                        .ok_or("an RSA CRT component is longer than 128 bytes")?;
                    write_secret_tlv(t, &padded, &mut data);
                }
                Algorithm::Rsa2048
            }
        };
        if let Some(p) = pin_policy {
            data.extend_from_slice(&[0xAA, 0x01, p.to_byte()]);
        }
        CommandApdu::new(0x00, Instruction::ImportAsymmetricKey, algorithm.piv_id(), slot)
            .with_data(data.to_vec())
            .map_err(|e| format!("IMPORT ASYMMETRIC KEY does not encode: {e}"))
    }
}

impl PrivateKey {
    /// The key as PKCS#8 DER, as the master VSC's secret key area keeps it.
    pub(crate) fn pkcs8(&self) -> Result<SecretBytes, String> {
        match self {
            PrivateKey::P256 { pkcs8, .. } => Ok(pkcs8.clone()),
            PrivateKey::Rsa2048(k) => {
                use rsa::pkcs8::EncodePrivateKey;
                k.to_pkcs8_der()
                    .map(|d| SecretBytes::from_slice(d.as_bytes()))
                    .map_err(|_| "encoding the RSA key as PKCS#8 failed".to_string())
            }
        }
    }
}

/// `tag len value` with a short or `81 xx` length, into a zeroized buffer.
fn write_secret_tlv(t: u8, value: &[u8], out: &mut Zeroizing<Vec<u8>>) {
    out.push(t);
    if value.len() > 0x7F {
        out.push(0x81);
    }
    // Values here are 32 or 128 bytes.
    out.push(u8::try_from(value.len()).unwrap_or(0));
    out.extend_from_slice(value);
}

fn left_pad(v: &[u8], len: usize) -> Option<Zeroizing<Vec<u8>>> {
    let pad = len.checked_sub(v.len())?;
    let mut out = Zeroizing::new(vec![0u8; pad]);
    out.extend_from_slice(v);
    Some(out)
}

/// The SubjectPublicKeyInfo of the public key a GENERATE answered
/// (`7F49 {86 04XY}` or `7F49 {81 n, 82 e}`): checked to be a P-256 point on
/// the curve, or an RSA-2048 modulus with e = 65537.
pub(crate) fn spki_from_generate(response: &[u8], algorithm: Algorithm) -> Result<Vec<u8>, String> {
    let outer =
        TlvRef::parse_single(response).map_err(|_| "the public key is not one BER-TLV object".to_string())?;
    if outer.tag != tag!(0x7F49) {
        return Err("the public key is not in a 7F49 template".into());
    }
    let children = outer
        .children()
        .map_err(|_| "the 7F49 template does not parse".to_string())?;
    let find = |t: u32| children.iter().find(|c| c.tag.raw() == t).map(|c| c.value);
    let der = match algorithm {
        Algorithm::P256 => {
            let point = find(0x86).ok_or("the P-256 public key lacks its point (86)")?;
            let key = p256::PublicKey::from_sec1_bytes(point)
                .map_err(|_| "the P-256 point is not on the curve".to_string())?;
            key.to_public_key_der()
        }
        Algorithm::Rsa2048 => {
            let n = find(0x81).ok_or("the RSA public key lacks its modulus (81)")?;
            let e = find(0x82).ok_or("the RSA public key lacks its exponent (82)")?;
            let n = BigUint::from_bytes_be(n);
            if n.bits() != RSA_BYTES * 8 || BigUint::from_bytes_be(e) != BigUint::from(RSA_EXPONENT) {
                return Err("the RSA public key is not 2048 bits with e = 65537".into());
            }
            let key = RsaPublicKey::new(n, BigUint::from(RSA_EXPONENT))
                .map_err(|_| "the RSA public key is not valid".to_string())?;
            key.to_public_key_der()
        }
    };
    der.map(|d| d.as_bytes().to_vec())
        .map_err(|_| "encoding the public key failed".to_string())
}

/// A certificate as a PIV certificate object's content:
/// `70 <DER> 71 01 00 FE 00` (not compressed, empty error detection code).
pub(crate) fn certificate_object(der: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(der.len() + 10);
    Tlv::new(tag!(0x70), der.to_vec()).write(&mut out);
    Tlv::new(tag!(0x71), vec![0x00]).write(&mut out);
    Tlv::new(tag!(0xFE), Vec::new()).write(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use rand::rngs::OsRng;

    use super::*;
    use crate::ports::KeyError;

    struct NoRsa;
    impl RsaKeySource for NoRsa {
        fn rsa2048(&self) -> Result<RsaPrivateKey, KeyError> {
            Err(KeyError::Generation("none here".into()))
        }
    }

    /// The public key as GENERATE shows it: `86 04XY` or `81 n 82 e`.
    fn public_objects(key: &PrivateKey) -> Vec<u8> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let mut out = Vec::new();
        match key {
            PrivateKey::P256 { key, .. } => {
                let point = key.public_key().to_encoded_point(false);
                Tlv::new(tag!(0x86), point.as_bytes().to_vec()).write(&mut out);
            }
            PrivateKey::Rsa2048(k) => {
                Tlv::new(tag!(0x81), k.n().to_bytes_be()).write(&mut out);
                Tlv::new(tag!(0x82), k.e().to_bytes_be()).write(&mut out);
            }
        }
        out
    }

    #[test]
    fn p256_round_trip_through_import_and_generate_forms() {
        let (k, spki) = PrivateKey::generate(Algorithm::P256, &NoRsa, &mut OsRng).unwrap();
        let import = k.import_command(0x9A, Some(PinPolicy::Once)).unwrap();
        assert_eq!((import.p1(), import.p2()), (0x11, 0x9A));
        assert_eq!(import.data().len(), 2 + 32 + 3);
        let mut gen = Vec::new();
        Tlv::new(tag!(0x7F49), public_objects(&k)).write(&mut gen);
        assert_eq!(spki_from_generate(&gen, Algorithm::P256).unwrap(), spki);
        assert!(spki_from_generate(&gen, Algorithm::Rsa2048).is_err());
        assert!(spki_from_generate(&gen[..gen.len() - 1], Algorithm::P256).is_err());
    }

    #[test]
    fn p256_keys_are_one_key_in_all_three_forms() {
        use p256::pkcs8::DecodePrivateKey;
        for _ in 0..8 {
            let (k, spki) = PrivateKey::generate(Algorithm::P256, &NoRsa, &mut OsRng).unwrap();
            let PrivateKey::P256 { key, pkcs8 } = &k else {
                panic!("not a P-256 key")
            };
            // The PKCS#8 the master keeps is the imported scalar's, and the
            // SPKI the certificate gets is its public key.
            let from_pkcs8 = p256::SecretKey::from_pkcs8_der(pkcs8.expose_secret()).unwrap();
            assert_eq!(from_pkcs8.to_bytes(), key.to_bytes());
            assert_eq!(
                key.public_key().to_public_key_der().unwrap().as_bytes(),
                spki.as_slice()
            );
            assert_eq!(k.pkcs8().unwrap().expose_secret(), pkcs8.expose_secret());
        }
    }

    #[test]
    fn p256_pkcs8_parts_refuse_what_is_not_a_p256_key() {
        let good = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        assert!(p256_parts(good.as_ref()).is_ok());
        let mut other_curve = good.as_ref().to_vec();
        let at = other_curve
            .windows(P256_ALGORITHM_ID.len())
            .position(|w| w == P256_ALGORITHM_ID)
            .unwrap();
        other_curve[at + P256_ALGORITHM_ID.len() - 1] ^= 1;
        assert!(p256_parts(&other_curve).is_err());
        for cut in [0, 10, good.as_ref().len() - 1] {
            assert!(p256_parts(&good.as_ref()[..cut]).is_err());
        }
    }

    #[test]
    fn a_failing_rsa_source_is_an_error() {
        let e = PrivateKey::generate(Algorithm::Rsa2048, &NoRsa, &mut OsRng)
            .err()
            .unwrap();
        assert!(e.contains("none here"), "{e}");
    }

    struct Fixed(RsaPrivateKey);
    impl RsaKeySource for Fixed {
        fn rsa2048(&self) -> Result<RsaPrivateKey, KeyError> {
            Ok(self.0.clone())
        }
    }

    #[test]
    fn rsa_keys_are_checked_and_imported_as_crt_components() {
        let small = Fixed(RsaPrivateKey::new(&mut OsRng, 1024).unwrap());
        let e = PrivateKey::generate(Algorithm::Rsa2048, &small, &mut OsRng)
            .err()
            .unwrap();
        assert!(e.contains("not RSA-2048"), "{e}");
        let good = Fixed(RsaPrivateKey::new(&mut OsRng, 2048).unwrap());
        let (k, spki) = PrivateKey::generate(Algorithm::Rsa2048, &good, &mut OsRng).unwrap();
        assert_eq!(
            spki,
            good.0.to_public_key().to_public_key_der().unwrap().as_bytes()
        );
        let import = k.import_command(0x9D, None).unwrap();
        assert_eq!((import.p1(), import.p2()), (0x07, 0x9D));
        // Five components of 128 bytes, each `tag 81 80 value`.
        assert_eq!(import.data().len(), 5 * (3 + 128));
        let tags: Vec<u8> = (0..5).map(|i| import.data()[i * 131]).collect();
        assert_eq!(tags, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn certificate_objects() {
        assert_eq!(
            certificate_object(&[0x30, 0x00]),
            [0x70, 0x02, 0x30, 0x00, 0x71, 0x01, 0x00, 0xFE, 0x00]
        );
    }
}
