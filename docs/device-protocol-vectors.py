#!/usr/bin/env python3
"""Recomputes every test vector of docs/device-protocol.md with an independent implementation
(Python's `cryptography` and the standard library), for firmware engineers to check theirs against.

    python3 docs/device-protocol-vectors.py
"""
import base64
import binascii
import hashlib

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def crc16(text: str) -> str:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), as 4 uppercase hex digits."""
    return "%04X" % binascii.crc_hqx(text.encode("ascii"), 0xFFFF)


def frame(body: str) -> str:
    return f"{body} *{crc16(body)}"


assert crc16("123456789") == "29B1"
UNCOMPRESSED = (serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
station = ec.derive_private_key(int.from_bytes(bytes(range(1, 33)), "big"), ec.SECP256R1())
device = ec.derive_private_key(int.from_bytes(bytes(range(33, 65)), "big"), ec.SECP256R1())
station_pub = station.public_key().public_bytes(*UNCOMPRESSED)
device_pub = device.public_key().public_bytes(*UNCOMPRESSED)
shared_x = station.exchange(ec.ECDH(), device.public_key())
salt = station_pub + device_pub
key = HKDF(hashes.SHA256(), 32, salt, b"dps-station/v1 session key").derive(shared_x)
confirm = HKDF(hashes.SHA256(), 16, salt, b"dps-station/v1 session confirm").derive(shared_x)
request_id = 1000
nonce = b"STA1" + request_id.to_bytes(8, "big")
symmetric_key = bytes(range(0xA0, 0xC0))
sealed = AESGCM(key).encrypt(nonce, symmetric_key, b"dps-station/v1 PUT symmetric-key")

print("station_pub =", station_pub.hex())
print("device_pub  =", device_pub.hex())
print("shared_x    =", shared_x.hex())
print("key         =", key.hex())
print("confirm     =", confirm.hex())
print("nonce       =", nonce.hex())
print("sealed      =", sealed.hex())
print("sha256(symmetric key) =", hashlib.sha256(symmetric_key).hexdigest())
b64 = lambda b: base64.b64encode(b).decode()
print(frame("@1 HELLO v=1"))
print(frame("@0 BOOT boot=1"))
print(frame(f"@999 SESSION pub={b64(station_pub)}"))
print(frame(f"@999 OK pub={b64(device_pub)} confirm={b64(confirm)}"))
print(frame(f"@1000 PUT item=symmetric-key enc=aes256gcm off=0 total={len(sealed)} data={b64(sealed)}"))
config = (
    "regid=widget-0042\nscope=0ne00ABCDEF\nendpoint=global.azure-devices-provisioning.net\n"
    "x.product.color=Ymx1ZQ==\n"
)
print("config digest =", hashlib.sha256(config.encode()).hexdigest())
