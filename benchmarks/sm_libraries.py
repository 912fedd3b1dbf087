"""Which SM2/SM3 library the sm crypto suite uses: each candidate against the standards'
published vectors, and the speed of SM2 verification (what a log or contract check repeats).

    pip install gmssl gmalg            # the pure-Python candidates, not dependencies
    python -m benchmarks.sm_libraries

Vectors: GB/T 32905-2016 Appendix A ("abc", "abcd"×16) for SM3; GB/T 32918.5-2017 Annex A
(recommended curve, identity 1234567812345678, "message digest", fixed k) for SM2. A library
that cannot be imported is reported as such and skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
SM3_ABCD_16 = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
D = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8"
PX = "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
PY = "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
K = "59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21"
R = "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
S = "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
MESSAGE = b"message digest"
UID = b"1234567812345678"


def per_call_ms(fn: Callable[[], Any], seconds: float = 1.0) -> float:
    fn()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        fn()
        calls += 1
    return (time.perf_counter() - started) / calls * 1000


def tongsuopy() -> dict[str, Any]:
    from operators.sm2 import SM2PrivateKey, SM2PublicKey
    from operators.suite import sm3

    public = SM2PublicKey.from_raw(bytes.fromhex("04" + PX + PY))
    signature = bytes.fromhex(R + S)

    def verifies(message: bytes) -> bool:
        try:
            public.verify(signature, message)
        except Exception:
            return False
        return True

    key = SM2PrivateKey.from_scalar(int(D, 16))
    return {
        "sm3": sm3(b"abc").hex() == SM3_ABC and sm3(b"abcd" * 16).hex() == SM3_ABCD_16,
        "sign_fixed_k": "k cannot be fixed",
        "verify_published": verifies(MESSAGE) and not verifies(b"message digesT"),
        "public_from_private": key.public_key().raw().hex().upper() == "04" + PX + PY,
        "verify_ms": per_call_ms(lambda: verifies(MESSAGE)),
        "sign_ms": per_call_ms(lambda: key.sign(MESSAGE)),
    }


def gmssl() -> dict[str, Any]:
    from gmssl import func, sm2, sm3

    crypt = sm2.CryptSM2(private_key=D.lower(), public_key=(PX + PY).lower())

    def digest(data: bytes) -> str:
        return str(sm3.sm3_hash(func.bytes_to_list(data)))

    signature = (R + S).lower()
    return {
        "sm3": digest(b"abc") == SM3_ABC and digest(b"abcd" * 16) == SM3_ABCD_16,
        "sign_fixed_k": crypt.sign_with_sm3(MESSAGE, K.lower()).upper() == R + S,
        "verify_published": crypt.verify_with_sm3(signature, MESSAGE)
        and not crypt.verify_with_sm3(signature, b"message digesT"),
        "public_from_private": "not offered",
        "verify_ms": per_call_ms(lambda: crypt.verify_with_sm3(signature, MESSAGE)),
        "sign_ms": per_call_ms(lambda: crypt.sign_with_sm3(MESSAGE)),
    }


def gmalg() -> dict[str, Any]:
    import gmalg as g

    def digest(data: bytes) -> str:
        h = g.SM3()
        h.update(data)
        return bytes(h.value()).hex()

    public = bytes.fromhex("04" + PX + PY)
    signer = g.SM2(bytes.fromhex(D), UID, public, rnd_fn=lambda _bits: int(K, 16))
    verifier = g.SM2(uid=UID, pk=public)
    r, s = bytes.fromhex(R), bytes.fromhex(S)
    return {
        "sm3": digest(b"abc") == SM3_ABC and digest(b"abcd" * 16) == SM3_ABCD_16,
        "sign_fixed_k": b"".join(signer.sign(MESSAGE)).hex().upper() == R + S,
        "verify_published": verifier.verify(MESSAGE, r, s)
        and not verifier.verify(b"message digesT", r, s),
        "public_from_private": g.SM2(bytes.fromhex(D), UID).generate_pk(bytes.fromhex(D)) == public,
        "verify_ms": per_call_ms(lambda: verifier.verify(MESSAGE, r, s)),
        "sign_ms": per_call_ms(lambda: g.SM2(bytes.fromhex(D), UID, public).sign(MESSAGE)),
    }


def ed25519() -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    signature, public = key.sign(MESSAGE), key.public_key()
    return {
        "verify_ms": per_call_ms(lambda: public.verify(signature, MESSAGE)),
        "sign_ms": per_call_ms(lambda: key.sign(MESSAGE)),
    }


def main() -> None:
    candidates: dict[str, Callable[[], dict[str, Any]]] = {
        "tongsuopy": tongsuopy,
        "gmssl": gmssl,
        "gmalg": gmalg,
        "pyca Ed25519 (for scale)": ed25519,
    }
    for name, measure in candidates.items():
        try:
            result = measure()
        except ImportError as exc:
            print(f"{name}: not installed ({exc.name})")
            continue
        shown = ", ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()
        )
        print(f"{name}: {shown}")


if __name__ == "__main__":
    main()
