#!/usr/bin/env python3
"""An independent reader of VSC format 1.0, written from vsc/src/file/FORMAT.md
alone (not from the Rust code), to show the text is enough to read an archive.

    python3 vsc-v1-reference-reader.py FILE --password PW
    python3 vsc-v1-reference-reader.py FILE --kek-hex HEX --kek-id ID

Needs the `cryptography` package (Argon2id needs version 44 or later). It
checks the digest, unwraps the DEK, checks the authentication tag, decrypts
the areas and prints what it found (key material only as lengths).
"""
import argparse
import hashlib
import hmac
import struct
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = bytes.fromhex("895653430D0A1A0A")


def tlvs(data):
    """One level of BER-TLV: list of (tag, value). Shortest lengths only."""
    out, i = [], 0
    while i < len(data):
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:
            while True:
                b = data[i]
                tag = (tag << 8) | b
                i += 1
                if not b & 0x80:
                    break
        l0 = data[i]
        i += 1
        if l0 < 0x80:
            n = l0
        else:
            k = l0 & 0x7F
            assert 1 <= k <= 4, "bad length"
            n = int.from_bytes(data[i:i + k], "big")
            assert n >= 0x80 and (k == 1 or n >= 1 << (8 * (k - 1))), "non-minimal length"
            i += k
        assert i + n <= len(data), "value overrun"
        out.append((tag, data[i:i + n]))
        i += n
    return out


def enc(tag, value):
    """A one-byte tag, the shortest length, the value."""
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    else:
        b = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(b)]) + b
    return bytes([tag]) + length + value


def fields(data):
    d = {}
    for t, v in tlvs(data):
        d.setdefault(t, []).append(v)
    return d


def hkdf(dek, uid, info):
    prk = hmac.new(uid, dek, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--password")
    ap.add_argument("--kek-hex")
    ap.add_argument("--kek-id")
    a = ap.parse_args()
    f = open(a.file, "rb").read()

    assert f[:8] == MAGIC, "bad magic"
    major, minor, n = struct.unpack(">HHI", f[8:16])
    assert major == 1, "unsupported major"
    assert len(f) == 80 + n, "length"
    assert hashlib.sha256(f[:-32]).digest() == f[-32:], "integrity digest"
    body = f[16:16 + n]
    top = tlvs(body)
    assert [t for t, _ in top] == [0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6], "sections"
    sec = dict(top)

    h = fields(sec[0xE1])
    uid = h[0xC1][0]
    attrs = fields(h[0xE4][0])
    print("label", h[0xC2][0].decode(), "type", h[0xC3][0].decode(), "uid", uid.hex().upper())
    print("state", attrs[0xC1][0].hex(), "origin", attrs[0xC2][0].hex(),
          "created", int.from_bytes(attrs[0xC3][0], "big"))

    dek = None
    for _, slot in tlvs(sec[0xE2]):
        s = fields(slot)
        kind = s[0xC1][0][0]
        descriptor = b"".join(enc(t, v) for t, v in tlvs(slot) if t in (0xC1, 0xE2, 0xC3))
        aad = b"VSC1 key slot" + uid + descriptor
        if kind == 1 and a.password:
            p = fields(s[0xE2][0])
            m, t, par = (int.from_bytes(p[x][0], "big") for x in (0xC3, 0xC4, 0xC5))
            assert p[0xC1][0] == b"\x02" and p[0xC2][0] == b"\x13"
            assert 8 * par <= m <= 1 << 20 and 1 <= t <= 64 and 1 <= par <= 16
            from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
            key = Argon2id(salt=p[0xC6][0], length=32, iterations=t, lanes=par,
                           memory_cost=m).derive(a.password.encode())
        elif kind == 2 and a.kek_hex and s[0xC3][0].decode() == a.kek_id:
            key = bytes.fromhex(a.kek_hex)
        else:
            continue
        try:
            dek = AESGCM(key).decrypt(s[0xC4][0], s[0xC5][0], aad)
            break
        except Exception:
            pass
    assert dek is not None, "no slot opened"

    mac = hkdf(dek, uid, b"VSC1 file mac")
    assert hmac.compare_digest(hmac.new(mac, f[:16 + n], hashlib.sha256).digest(), f[16 + n:48 + n]), \
        "file authentication"
    print("file authentication tag OK")

    names = {0xE4: b"VSC1 private area", 0xE5: b"VSC1 secret key area", 0xE6: b"VSC1 password area"}
    plain = {}
    for tag, area_id in ((0xE4, 4), (0xE5, 5), (0xE6, 6)):
        s = fields(sec[tag])
        aad = f[8:12] + uid + bytes([area_id])
        plain[tag] = AESGCM(hkdf(dek, uid, names[tag])).decrypt(s[0xC1][0], s[0xC2][0], aad)

    def objects(data):
        for _, o in tlvs(data):
            d = fields(o)
            ident = {0xC1: "PIV", 0xC2: "EF", 0xC3: "GP", 0xC4: "name"}
            (k,) = [k for k in ident if k in d]
            print("  ", ident[k], d[k][0].hex().upper() if k != 0xC4 else d[k][0].decode(),
                  "=", d[0xC5][0][:24])

    print("public area:")
    objects(sec[0xE3])
    print("private area:")
    objects(plain[0xE4])
    print("secret keys:")
    for _, e in tlvs(plain[0xE5]):
        d = fields(e)
        ref = next(d[k][0].hex().upper() if k != 0xC3 else d[k][0].decode()
                   for k in (0xC1, 0xC2, 0xC3) if k in d)
        print("  ", ref, "alg", d[0xC4][0].hex(), "material", len(d[0xC5][0]), "bytes")
    print("passwords:")
    for _, e in tlvs(plain[0xE6]):
        d = fields(e)
        print("  ", d[0xC1][0].hex(), "retries", d[0xC6][0][0], "of", d[0xC5][0][0],
              "length", d[0xC7][0][0], "-", d[0xC8][0][0])


if __name__ == "__main__":
    sys.exit(main())
