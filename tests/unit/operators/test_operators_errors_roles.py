import pytest

from operators.errors import (
    InvalidPrivateKey,
    InvalidPublicKey,
    OperatorError,
    SignatureInvalid,
    SubmissionInvalid,
)
from operators.roles import Role


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (InvalidPublicKey, "invalid_public_key"),
        (SignatureInvalid, "signature_invalid"),
        (InvalidPrivateKey, "invalid_private_key"),
        (SubmissionInvalid, "submission_invalid"),
    ],
)
def test_error_codes(cls: type[OperatorError], code: str) -> None:
    assert issubclass(cls, OperatorError)
    assert cls.code == code
    assert cls("x").code == code


def test_roles_are_the_four_of_the_design() -> None:
    assert [r.value for r in Role] == ["bureau", "provider", "operator", "regulator"]
    assert Role("operator") is Role.operator
    assert Role.bureau == "bureau"
    with pytest.raises(ValueError):
        Role("admin")
