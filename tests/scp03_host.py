#!/usr/bin/env python3
"""An independent GlobalPlatform SCP03 host, for testing Cardsmith's card.

Written from the specification text -- GlobalPlatform Card Specification 2.3
Amendment D (SCP03) v1.1.1 and Card Specification 2.3.1 chapter 11, as
summarised in shared/reference/card-protocols.md section B -- and sharing no
code with the Rust `vsc::scp03` module, so that both sides of the secure
channel are checked against something other than themselves.

What it implements (Amendment D section numbers):

* the SP 800-108 counter-mode KDF with AES-CMAC (4.1.5), session keys S-ENC,
  S-MAC, S-RMAC (6.2.1), card and host cryptograms (6.2.2.2, 6.2.2.3), the
  pseudo-random card challenge (6.2.2.1);
* C-MAC chaining (6.2.4), C-DECRYPTION with the command counter (6.2.6),
  R-MAC and R-ENCRYPTION checking (6.2.5, 6.2.7);
* PUT KEY key data fields for AES keys under the static Key-DEK (7.2);
* 61xx / 6Cxx response collection (ISO 7816-4).

It runs one scenario against a card in the issuer security domain:

  1. SELECT the ISD, read the CPLC;
  2. open a session (default: key set 01, the GP test keys 40..4F, level 33);
  3. read the CPLC again inside the session (R-ENCRYPTION), GET STATUS;
  4. PUT KEY a new key set (random keys unless given), check its KCVs;
  5. SET STATUS INITIALIZED, then SECURED;
  6. reopen with the new keys, check the life cycle and key information;
  7. check that INITIALIZE UPDATE with the old key set is refused (6A88).

Transports (pluggable):

  --stdio          write each command APDU as a hex line on stdout, read the
                   response as a hex line on stdin (a test harness drives a
                   card in process). Messages go to stderr.
  --reader NAME    a PC/SC reader whose name contains NAME, through pyscard
                   (Debian python3-pyscard).

Exit status 0 when every check passed; otherwise 1 with a message on stderr
saying what failed. Needs Python 3.7+ and the `cryptography` package (any
version from 2.x on; Debian 12 ships 38).
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_VECTOR_DIR = os.path.join(HERE, "..", "vsc", "tests", "vectors")

ISD_AID = bytes.fromhex("A000000151000000")
GP_TEST_KEY = bytes(range(0x40, 0x50))


class HostError(Exception):
    """A check failed; the message says which."""


try:
    from cryptography.hazmat.backends import default_backend
    from cryptography.hazmat.primitives import cmac as _cmac
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
except ImportError as exc:  # pragma: no cover - reported to the user
    sys.stderr.write(
        "scp03_host: FAILED: the Python package 'cryptography' is missing "
        "(Debian: apt-get install python3-cryptography): %s\n" % exc
    )
    sys.exit(1)


def log(msg):
    sys.stderr.write("scp03_host: %s\n" % msg)
    sys.stderr.flush()


# --------------------------------------------------------------------------
# AES primitives


def _cipher(key, mode):
    return Cipher(algorithms.AES(key), mode, backend=default_backend())


def aes_block(key, block):
    """AES encryption of one 16-byte block."""
    assert len(block) == 16
    e = _cipher(key, modes.ECB()).encryptor()
    return e.update(block) + e.finalize()


def cbc_encrypt(key, iv, data):
    assert len(data) % 16 == 0
    e = _cipher(key, modes.CBC(iv)).encryptor()
    return e.update(data) + e.finalize()


def cbc_decrypt(key, iv, data):
    if len(data) % 16 != 0:
        raise HostError("encrypted data of %d bytes is not whole blocks" % len(data))
    d = _cipher(key, modes.CBC(iv)).decryptor()
    return d.update(data) + d.finalize()


def aes_cmac(key, data):
    c = _cmac.CMAC(algorithms.AES(key), backend=default_backend())
    c.update(data)
    return c.finalize()


def pad80(data):
    """ISO/IEC 9797-1 method 2: 80, then 00 up to a whole block."""
    out = data + b"\x80"
    return out + b"\x00" * (-len(out) % 16)


def unpad80(data):
    stripped = data.rstrip(b"\x00")
    if not stripped.endswith(b"\x80"):
        raise HostError("decrypted response data has no 80 padding")
    return stripped[:-1]


# --------------------------------------------------------------------------
# Amendment D 4.1.5: the KDF


CARD_CRYPTOGRAM = 0x00
HOST_CRYPTOGRAM = 0x01
CARD_CHALLENGE = 0x02
S_ENC = 0x04
S_MAC = 0x06
S_RMAC = 0x07


def kdf(key, constant, bits, context):
    """NIST SP 800-108 counter mode, PRF AES-CMAC: blocks of
    label(11 x 00 || constant) || 00 || L(2) || i || context."""
    out = b""
    i = 1
    while len(out) * 8 < bits:
        data = (
            b"\x00" * 11
            + bytes([constant])
            + b"\x00"
            + bits.to_bytes(2, "big")
            + bytes([i])
            + context
        )
        out += aes_cmac(key, data)
        i += 1
    return out[: bits // 8]


def key_check_value(key):
    """Amendment D 7.2.2: first 3 bytes of AES(key, 16 x 01)."""
    return aes_block(key, b"\x01" * 16)[:3]


def session_keys(key_enc, key_mac, host_challenge, card_challenge):
    ctx = host_challenge + card_challenge
    bits = len(key_enc) * 8
    return (
        kdf(key_enc, S_ENC, bits, ctx),
        kdf(key_mac, S_MAC, bits, ctx),
        kdf(key_mac, S_RMAC, bits, ctx),
    )


def put_key_field(dek, key):
    """Amendment D Table 7-10: 88 | Lk+1 (padded) | Lk | E(Key-DEK, key) | 03 | KCV.
    The key is padded to whole blocks with zeros (arbitrary bytes are allowed),
    then encrypted in AES-CBC with a zero ICV (6.2.8)."""
    padded = key + b"\x00" * (-len(key) % 16)
    enc = cbc_encrypt(dek, b"\x00" * 16, padded)
    return bytes([0x88, len(enc) + 1, len(key)]) + enc + b"\x03" + key_check_value(key)


# --------------------------------------------------------------------------
# APDUs


def apdu(cla, ins, p1, p2, data=b"", le=None):
    """A short APDU (this host sends no extended ones)."""
    if len(data) > 255:
        raise HostError("command data of %d bytes does not fit a short APDU" % len(data))
    out = bytes([cla, ins, p1, p2])
    if data:
        out += bytes([len(data)]) + data
    if le is not None:
        out += bytes([le & 0xFF])
    return out


def sw_text(sw):
    return "%04X" % sw


class StdioTransport:
    """Hex lines: commands out on stdout, responses in on stdin."""

    name = "stdio"

    def transmit(self, command):
        sys.stdout.write(command.hex().upper() + "\n")
        sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            raise HostError("the card side closed the connection (no response on stdin)")
        try:
            response = bytes.fromhex(line.strip())
        except ValueError:
            raise HostError("the response line is not hex: %r" % line.strip()[:80])
        if len(response) < 2:
            raise HostError("a response without a status word: %r" % line.strip())
        return response


class PcscTransport:
    """A card in a PC/SC reader, through pyscard."""

    def __init__(self, name):
        try:
            from smartcard.System import readers
            from smartcard.Exceptions import SmartcardException
        except ImportError as exc:
            raise HostError(
                "pyscard is not importable (Debian: python3-pyscard; run this script "
                "with the Python it is installed for, e.g. /usr/bin/python3): %s" % exc
            )
        self._errors = SmartcardException
        try:
            found = [r for r in readers() if name in str(r)]
        except SmartcardException as exc:
            raise HostError("cannot list PC/SC readers (is pcscd running?): %s" % exc)
        if not found:
            raise HostError(
                "no PC/SC reader name contains %r; readers: %s"
                % (name, ", ".join(str(r) for r in readers()) or "none")
            )
        self.name = str(found[0])
        self.connection = found[0].createConnection()
        try:
            self.connection.connect()
        except SmartcardException as exc:
            raise HostError("cannot connect to the card in %r: %s" % (self.name, exc))

    def transmit(self, command):
        try:
            data, sw1, sw2 = self.connection.transmit(list(command))
        except self._errors as exc:
            raise HostError("transmit failed on %r: %s" % (self.name, exc))
        return bytes(data) + bytes([sw1, sw2])


class Card:
    """Sends APDUs; collects responses spread over 61xx and resends on 6Cxx."""

    def __init__(self, transport):
        self.transport = transport

    def send(self, command):
        response = self.transport.transmit(command)
        data, sw = response[:-2], int.from_bytes(response[-2:], "big")
        if sw >> 8 == 0x6C:
            command = command[:-1] + bytes([sw & 0xFF])
            response = self.transport.transmit(command)
            data, sw = response[:-2], int.from_bytes(response[-2:], "big")
        rounds = 0
        while sw >> 8 == 0x61:
            rounds += 1
            if rounds > 1024:
                raise HostError("the card keeps answering 61xx")
            response = self.transport.transmit(apdu(0x00, 0xC0, 0x00, 0x00, le=sw & 0xFF))
            data += response[:-2]
            sw = int.from_bytes(response[-2:], "big")
        return data, sw


# --------------------------------------------------------------------------
# The secure channel


def r_mac_applies(sw):
    """R-MAC only on 9000, 62xx and 63xx (Amendment D 6.2.5)."""
    return sw == 0x9000 or sw >> 8 in (0x62, 0x63)


class Session:
    """One SCP03 session, host side (S8 mode)."""

    LEVELS = {0x01: "C-MAC", 0x03: "C-DEC C-MAC", 0x11: "C-MAC R-MAC",
              0x13: "C-DEC C-MAC R-MAC", 0x33: "C-DEC C-MAC R-MAC R-ENC"}

    def __init__(self, card, keys, kvn, level, aid, host_challenge=None):
        if level not in self.LEVELS:
            raise HostError("security level %02X is not an SCP03 level" % level)
        key_enc, key_mac, _key_dek = keys
        self.card = card
        self.level = level
        hc = host_challenge or os.urandom(8)
        data, sw = card.send(apdu(0x80, 0x50, kvn, 0x00, hc, le=0))
        if sw != 0x9000:
            raise RefusedError("INITIALIZE UPDATE with KVN %02X" % kvn, sw)
        if len(data) not in (29, 32):
            raise HostError("INITIALIZE UPDATE response of %d bytes (29 or 32 expected)" % len(data))
        self.kdd = data[0:10]
        self.kvn = data[10]
        scp, i = data[11], data[12]
        cc, card_cryptogram = data[13:21], data[21:29]
        if scp != 0x03:
            raise HostError("the card answers SCP %02X, not 03" % scp)
        if kvn and self.kvn != kvn:
            raise HostError("asked for key set %02X, the card used %02X" % (kvn, self.kvn))
        if level & 0x10 and not i & 0x20:
            raise HostError("the card (i=%02X) offers no R-MAC" % i)
        if level & 0x20 and not i & 0x40:
            raise HostError("the card (i=%02X) offers no R-ENCRYPTION" % i)
        if i & 0x10:
            if len(data) != 32:
                raise HostError("pseudo-random challenge announced but no sequence counter")
            self.sequence_counter = int.from_bytes(data[29:32], "big")
            expected = kdf(key_enc, CARD_CHALLENGE, 64, data[29:32] + aid)
            if expected != cc:
                raise HostError(
                    "the card challenge is not the pseudo-random one for counter %06X and AID %s"
                    % (self.sequence_counter, aid.hex().upper())
                )
        else:
            self.sequence_counter = None
        self.s_enc, self.s_mac, self.s_rmac = session_keys(key_enc, key_mac, hc, cc)
        if kdf(self.s_mac, CARD_CRYPTOGRAM, 64, hc + cc) != card_cryptogram:
            raise HostError("the card cryptogram does not verify: wrong keys, or a wrong card")
        host_cryptogram = kdf(self.s_mac, HOST_CRYPTOGRAM, 64, hc + cc)
        header = bytes([0x84, 0x82, level, 0x00, 16])
        mac = aes_cmac(self.s_mac, b"\x00" * 16 + header + host_cryptogram)
        self.chain = mac
        self.counter = 0
        _, sw = card.send(header + host_cryptogram + mac[:8])
        if sw != 0x9000:
            raise RefusedError("EXTERNAL AUTHENTICATE", sw)

    def wrap(self, cla, ins, p1, p2, data=b"", le=None):
        """Secures one command; returns (APDU, what unwrap needs)."""
        self.counter += 1
        if self.level & 0x02 and data:
            icv = aes_block(self.s_enc, self.counter.to_bytes(16, "big"))
            data = cbc_encrypt(self.s_enc, icv, pad80(data))
        secured_cla = cla | 0x04
        lc = len(data) + 8
        if lc > 255:
            raise HostError("a secured command of %d data bytes needs an extended APDU" % lc)
        mac = aes_cmac(self.s_mac, self.chain + bytes([secured_cla, ins, p1, p2, lc]) + data)
        self.chain = mac
        return apdu(secured_cla, ins, p1, p2, data + mac[:8], le), (self.counter, mac)

    def unwrap(self, expect, data, sw, what):
        counter, c_mac = expect
        if not self.level & 0x10:
            return data
        if not r_mac_applies(sw):
            if data:
                raise HostError("%s: SW %s came with %d data bytes" % (what, sw_text(sw), len(data)))
            return data
        if len(data) < 8:
            raise HostError("%s: the response has no R-MAC" % what)
        body, r_mac = data[:-8], data[-8:]
        expected = aes_cmac(self.s_rmac, c_mac + body + sw.to_bytes(2, "big"))[:8]
        if expected != r_mac:
            raise HostError("%s: the R-MAC does not verify" % what)
        if self.level & 0x20 and body:
            icv = aes_block(self.s_enc, b"\x80" + counter.to_bytes(15, "big"))
            body = unpad80(cbc_decrypt(self.s_enc, icv, body))
        return body

    def command(self, what, cla, ins, p1, p2, data=b"", le=None, expect_sw=0x9000):
        command, expect = self.wrap(cla, ins, p1, p2, data, le)
        rdata, sw = self.card.send(command)
        body = self.unwrap(expect, rdata, sw, what)
        if expect_sw is not None and sw != expect_sw:
            raise RefusedError(what, sw, expect_sw)
        return body, sw


class RefusedError(HostError):
    def __init__(self, what, sw, expected=0x9000):
        HostError.__init__(self, "%s answered %s, expected %s" % (what, sw_text(sw), sw_text(expected)))
        self.sw = sw


# --------------------------------------------------------------------------
# BER-TLV, just enough to read the card's answers


def tlv_items(data):
    """Top-level (tag, value) pairs of BER-TLV data."""
    items = []
    i = 0
    while i < len(data):
        start = i
        i += 1
        if data[start] & 0x1F == 0x1F:
            while i < len(data) and data[i] & 0x80:
                i += 1
            i += 1
        tag = int.from_bytes(data[start:i], "big")
        if i >= len(data):
            raise HostError("truncated TLV: %s" % data.hex().upper())
        length = data[i]
        i += 1
        if length & 0x80:
            n = length & 0x7F
            if n == 0 or n > 3 or i + n > len(data):
                raise HostError("bad TLV length in %s" % data.hex().upper())
            length = int.from_bytes(data[i : i + n], "big")
            i += n
        if i + length > len(data):
            raise HostError("TLV value runs past the data: %s" % data.hex().upper())
        items.append((tag, data[i : i + length]))
        i += length
    return items


def tlv_find(data, tag):
    for t, v in tlv_items(data):
        if t == tag:
            return v
    raise HostError("tag %X missing in %s" % (tag, data.hex().upper() or "an empty response"))


# --------------------------------------------------------------------------
# Self-test against the project's vector files


def read_vectors(path):
    values = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if "=" in line:
                    k, v = line.split("=", 1)
                    values[k.strip()] = bytes.fromhex(v.strip())
    except OSError as exc:
        raise HostError("cannot read the test vectors %s: %s" % (path, exc))
    return values


def self_test(vector_dir):
    """The KDF, cryptograms and KCV against scp03_session_keys.txt (published
    OpenJavaCard vectors), PUT KEY fields against gp_put_key.txt (OpenSSL)."""
    v = read_vectors(os.path.join(vector_dir, "scp03_session_keys.txt"))
    try:
        hc, cc = v["host_challenge"], v["card_challenge"]
        keys = session_keys(v["key_enc"], v["key_mac"], hc, cc)
        for name, got in zip(("s_enc", "s_mac", "s_rmac"), keys):
            if got != v[name]:
                raise HostError("self-test: %s is %s, the vector says %s" % (name, got.hex(), v[name].hex()))
        if kdf(keys[1], CARD_CRYPTOGRAM, 64, hc + cc) != v["card_cryptogram"]:
            raise HostError("self-test: card cryptogram")
        if kdf(keys[1], HOST_CRYPTOGRAM, 64, hc + cc) != v["host_cryptogram"]:
            raise HostError("self-test: host cryptogram")
        if key_check_value(v["key_dek"]) != v["kcv"]:
            raise HostError("self-test: key check value")
    except KeyError as exc:
        raise HostError("self-test: the vector file lacks %s" % exc)
    path = os.path.join(vector_dir, "gp_put_key.txt")
    try:
        lines = [l.split() for l in open(path) if l.strip() and not l.startswith("#")]
    except OSError as exc:
        raise HostError("cannot read the test vectors %s: %s" % (path, exc))
    dek = None
    checked = 0
    for f in lines:
        if f[0] == "dek":
            dek = bytes.fromhex(f[1])
        elif f[0] == "key":
            clear, enc, kcv = (bytes.fromhex(x) for x in f[2:5])
            want = bytes([0x88, len(enc) + 1, len(clear)]) + enc + b"\x03" + kcv
            if put_key_field(dek, clear) != want:
                raise HostError("self-test: PUT KEY field for key %s" % clear.hex())
            checked += 1
    if not checked:
        raise HostError("self-test: no PUT KEY vectors in %s" % path)
    log("self-test passed (KDF, cryptograms, KCV, %d PUT KEY fields)" % checked)


# --------------------------------------------------------------------------
# The scenario


LIFE_CYCLES = {0x01: "OP_READY", 0x07: "INITIALIZED", 0x0F: "SECURED", 0x7F: "CARD_LOCKED", 0xFF: "TERMINATED"}


def isd_life_cycle(session):
    body, _ = session.command("GET STATUS (ISD)", 0x80, 0xF2, 0x80, 0x02, b"\x4F\x00", le=0)
    entry = tlv_find(body, 0xE3)
    if tlv_find(entry, 0x4F) != ISD_AID:
        raise HostError("GET STATUS names %s, not the ISD" % tlv_find(entry, 0x4F).hex().upper())
    return tlv_find(entry, 0x9F70)[0]


def parse_keys(text):
    parts = [bytes.fromhex(p) for p in text.split(",")]
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or len({len(p) for p in parts}) != 1 or len(parts[0]) not in (16, 24, 32):
        raise HostError("keys are ENC,MAC,DEK (or one key for all) of 16, 24 or 32 bytes each")
    return tuple(parts)


def run(card, args):
    level = int(args.level, 16)
    keys = parse_keys(args.keys) if args.keys else (GP_TEST_KEY,) * 3
    kvn = int(args.kvn, 16)
    new_kvn = int(args.new_kvn, 16)
    if args.new_keys:
        new_keys = parse_keys(args.new_keys)
    else:
        new_keys = tuple(os.urandom(len(keys[0])) for _ in range(3))

    # 1. The ISD and the card's identity, in clear.
    data, sw = card.send(apdu(0x00, 0xA4, 0x04, 0x00, le=0))
    if sw != 0x9000:
        raise RefusedError("SELECT of the issuer security domain", sw)
    fci = tlv_find(data, 0x6F)
    aid = tlv_find(fci, 0x84)
    if aid != ISD_AID:
        log("the ISD's AID is %s" % aid.hex().upper())
    proprietary = tlv_find(fci, 0xA5)
    tlv_find(proprietary, 0x9F65)
    data, sw = card.send(apdu(0x80, 0xCA, 0x9F, 0x7F, le=0))
    if sw != 0x9000:
        raise RefusedError("GET DATA CPLC", sw)
    cplc = tlv_find(data, 0x9F7F)
    if len(cplc) != 42:
        raise HostError("the CPLC has %d bytes, not 42" % len(cplc))
    log("card: CPLC IC serial %s" % cplc[12:16].hex().upper())

    # 2. A session with the current keys.
    s = Session(card, keys, kvn, level, aid)
    log("session open with key set %02X at level %02X (%s)" % (s.kvn, level, Session.LEVELS[level]))
    body, _ = s.command("GET DATA CPLC (secured)", 0x80, 0xCA, 0x9F, 0x7F, le=0)
    if tlv_find(body, 0x9F7F) != cplc:
        raise HostError("the CPLC read inside the session differs from the one read in clear")
    lc = isd_life_cycle(s)
    log("life cycle %s" % LIFE_CYCLES.get(lc, "%02X" % lc))
    if lc not in (0x01, 0x07):
        raise HostError(
            "the card is %s; this scenario needs card stock in OP_READY or INITIALIZED"
            % LIFE_CYCLES.get(lc, "%02X" % lc)
        )

    # 3. New keys, decrypted by the card with the session key set's Key-DEK.
    if not level & 0x02:
        raise HostError("PUT KEY needs C-DECRYPTION: use level 03, 13 or 33")
    fields = b"".join(put_key_field(keys[2], k) for k in new_keys)
    body, _ = s.command("PUT KEY", 0x80, 0xD8, 0x00, 0x81, bytes([new_kvn]) + fields, le=0)
    expected = bytes([new_kvn]) + b"".join(key_check_value(k) for k in new_keys)
    if body != expected:
        raise HostError("PUT KEY answered %s, expected %s" % (body.hex().upper(), expected.hex().upper()))
    log("PUT KEY: key set %02X loaded, KCVs %s" % (new_kvn, " ".join(key_check_value(k).hex().upper() for k in new_keys)))

    # 4. The card life cycle.
    if lc == 0x01:
        s.command("SET STATUS INITIALIZED", 0x80, 0xF0, 0x80, 0x07)
    s.command("SET STATUS SECURED", 0x80, 0xF0, 0x80, 0x0F)
    if isd_life_cycle(s) != 0x0F:
        raise HostError("the card is not SECURED after SET STATUS")
    log("card SECURED")

    # 5. The new keys work; the old key set is refused.
    s2 = Session(card, new_keys, new_kvn, level, aid)
    if isd_life_cycle(s2) != 0x0F:
        raise HostError("the life cycle read with the new keys is not SECURED")
    info, _ = s2.command("GET DATA key information", 0x80, 0xCA, 0x00, 0xE0, le=0)
    kvns = {v[1] for t, v in tlv_items(tlv_find(info, 0xE0)) if t == 0xC0}
    if new_kvn not in kvns:
        raise HostError("the key information lists no key set %02X: %s" % (new_kvn, info.hex().upper()))
    log("session open with the new key set %02X" % new_kvn)
    try:
        Session(card, keys, kvn, level, aid)
    except RefusedError as exc:
        if exc.sw != 0x6A88:
            raise
        log("key set %02X refused by the SECURED card (6A88)" % kvn)
    else:
        raise HostError("the SECURED card still accepts key set %02X" % kvn)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--stdio", action="store_true", help="APDUs as hex lines on stdout/stdin")
    where.add_argument("--reader", metavar="NAME", help="a PC/SC reader whose name contains NAME")
    p.add_argument("--kvn", default="01", help="key set to open the first session with (hex, default 01)")
    p.add_argument("--keys", help="its keys: ENC,MAC,DEK in hex, or one key for all (default: GP test keys)")
    p.add_argument("--level", default="33", help="security level (hex, default 33)")
    p.add_argument("--new-kvn", default="30", help="KVN of the key set to load (hex, default 30)")
    p.add_argument("--new-keys", help="keys to load: ENC,MAC,DEK in hex (default: random)")
    p.add_argument("--vectors", default=DEFAULT_VECTOR_DIR, help="directory of the test vector files")
    args = p.parse_args(argv)
    try:
        self_test(args.vectors)
        transport = StdioTransport() if args.stdio else PcscTransport(args.reader)
        run(Card(transport), args)
    except HostError as exc:
        log("FAILED: %s" % exc)
        return 1
    log("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
