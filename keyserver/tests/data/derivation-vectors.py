#!/usr/bin/env python3
"""Recomputes derivation-vectors.txt independently of the Rust code.

NIST SP 800-108 KDF in counter mode, PRF = AES-CMAC (Python `cryptography`),
with the SCP03 fixed-input layout:
    block i = CMAC(master, 00*11 || label || 00 || L (2 bytes, bits) || i || context)
blocks concatenated and truncated to L bits.
Run: python3 derivation-vectors.py > derivation-vectors.txt
"""
from cryptography.hazmat.primitives.cmac import CMAC
from cryptography.hazmat.primitives.ciphers import algorithms


def kdf(master: bytes, label: int, out_len: int, context: bytes) -> bytes:
    out = b""
    i = 1
    while len(out) < out_len:
        c = CMAC(algorithms.AES(master))
        c.update(bytes(11) + bytes([label, 0]) + (out_len * 8).to_bytes(2, "big") + bytes([i]) + context)
        out += c.finalize()
        i += 1
    return out[:out_len]


enc = bytes(range(0x00, 0x20))
mac = bytes(range(0x20, 0x40))
dek = bytes(range(0x40, 0x60))
mgmt = bytes(range(0x60, 0x80))
print("# Card key and PIV management key derivation vectors.")
print("# Computed by derivation-vectors.py (Python `cryptography` AES-CMAC, independent of the Rust code):")
print("# block i = AES-CMAC(master, 00*11 || label || 00 || L || i || context), truncated to L bits.")
print("# card keys: labels 41 (ENC), 42 (MAC), 43 (DEK), L = 0080, context = KDD (10 bytes), KVN 30.")
print("# management key: label 50, L = 00C0, context = chip serial as 4 bytes big-endian.")
print(f"master-enc {enc.hex()}")
print(f"master-mac {mac.hex()}")
print(f"master-dek {dek.hex()}")
print(f"master-mgmt {mgmt.hex()}")
for kdd in [bytes(10), bytes(range(1, 11)), bytes.fromhex("00001079000000000001"), bytes([0xFF] * 10)]:
    print(f"card {kdd.hex()} {kdf(enc, 0x41, 16, kdd).hex()} {kdf(mac, 0x42, 16, kdd).hex()} {kdf(dek, 0x43, 16, kdd).hex()}")
for serial in [0, 1, 1079, 0xFFFFFFFF]:
    print(f"mgmt {serial} {kdf(mgmt, 0x50, 24, serial.to_bytes(4, 'big')).hex()}")
