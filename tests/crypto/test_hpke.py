"""HPKE: the RFC 9180 known answer, round trips in both suites, and one error for every failure."""

import pickle

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ipa.crypto.hpke import PrivateKey, PublicKey, Suite, open_sealed, seal
from ipa.errors import InputError, InvalidReportError, InvalidReportReason

# RFC 9180, Appendix A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base mode.
RFC_SK_R = bytes.fromhex("4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8")
RFC_PK_R = bytes.fromhex("3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d")
RFC_ENC = bytes.fromhex("37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431")
RFC_INFO = bytes.fromhex("4f6465206f6e2061204772656369616e2055726e")
RFC_KEY = bytes.fromhex("4531685d41d65f03dc48f6b8302c05b0")
RFC_BASE_NONCE = bytes.fromhex("56d890e5accaaf011cff4b7d")
RFC_PT = bytes.fromhex("4265617574792069732074727574682c20747275746820626561757479")
SUITES = [pytest.param(s, marks=pytest.mark.skipif(not s.supported, reason="no ML-KEM here")) for s in Suite]
RFC_CT_COUNT0 = bytes.fromhex(
    "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a"
)


def decryption_failed(call, *args):
    with pytest.raises(InvalidReportError) as caught:
        call(*args)
    assert caught.value.reason is InvalidReportReason.DECRYPTION_FAILED
    return caught.value


def test_rfc_9180_a11_known_answer():
    # The single-shot API seals with empty AAD; the RFC's first message uses AAD "Count-0".
    # Its key and base nonce give both: the AAD-"Count-0" ciphertext checks the values
    # copied here, the empty-AAD one is what a single-shot open must accept.
    assert AESGCM(RFC_KEY).encrypt(RFC_BASE_NONCE, RFC_PT, b"Count-0") == RFC_CT_COUNT0
    sealed = RFC_ENC + AESGCM(RFC_KEY).encrypt(RFC_BASE_NONCE, RFC_PT, b"")
    key = PrivateKey(Suite.X25519, RFC_SK_R)
    assert key.public_key() == PublicKey(Suite.X25519, RFC_PK_R)
    assert open_sealed(key, sealed, RFC_INFO) == RFC_PT
    decryption_failed(open_sealed, key, sealed, RFC_INFO + b"!")


@pytest.mark.parametrize("suite", SUITES)
def test_round_trip_and_sizes(suite):
    key = PrivateKey.generate(suite)
    sealed = seal(key.public_key(), b"sixteen byte msg", b"info")
    assert len(sealed) == suite.sealed_length(16) == suite.enc_length + 32
    assert open_sealed(key, sealed, b"info") == b"sixteen byte msg"
    assert seal(key.public_key(), b"sixteen byte msg", b"info") != sealed  # a fresh ephemeral key each time
    assert PrivateKey(suite, key.raw).public_key() == key.public_key()


@pytest.mark.parametrize("suite", SUITES)
def test_every_failure_is_the_same_error(suite):
    key = PrivateKey.generate(suite)
    sealed = seal(key.public_key(), b"m" * 16, b"info")
    messages = set()
    for position in (0, suite.enc_length - 1, suite.enc_length, len(sealed) - 1):  # enc, ciphertext, tag
        flipped = bytearray(sealed)
        flipped[position] ^= 0x01
        messages.add(str(decryption_failed(open_sealed, key, bytes(flipped), b"info")))
    messages.add(str(decryption_failed(open_sealed, key, sealed, b"other info")))
    messages.add(str(decryption_failed(open_sealed, PrivateKey.generate(suite), sealed, b"info")))
    messages.add(str(decryption_failed(open_sealed, key, sealed[:-1], b"info")))
    messages.add(str(decryption_failed(open_sealed, key, sealed[:5], b"info")))
    messages.add(str(decryption_failed(open_sealed, key, b"", b"info")))
    assert len(messages) == 1  # no oracle: one message whatever went wrong


def test_keys_check_their_length_and_hide_secrets():
    with pytest.raises(InputError, match="32 bytes"):
        PrivateKey(Suite.X25519, b"short")
    with pytest.raises(InputError, match="public key must be 1216 bytes"):
        PublicKey(Suite.MLKEM768_X25519, bytes(32))
    key = PrivateKey.generate()
    assert key.raw.hex() not in repr(key)


def test_keys_pickle_after_use():
    key = PrivateKey.generate()
    sealed = seal(key.public_key(), b"m" * 16, b"i")
    assert open_sealed(key, sealed, b"i") == b"m" * 16  # caches the library's key objects
    copy = pickle.loads(pickle.dumps(key))
    assert copy == key and open_sealed(copy, sealed, b"i") == b"m" * 16
    assert pickle.loads(pickle.dumps(key.public_key())) == key.public_key()


def test_suite_labels():
    for suite in Suite:
        assert Suite.from_label(suite.label) is suite
    with pytest.raises(InputError, match="HPKE suite must be one of"):
        Suite.from_label("P256")
